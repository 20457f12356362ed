"""Resolve a training-free graph-filter model (GF-CF, BSPM) by name, for training and for serving."""
from __future__ import annotations

import difflib
import inspect
from typing import Any, Mapping

import numpy as np
import scipy.sparse as sp
import torch

from .bspm import BSPM
from .gfcf import GFCF

FILTER_MODELS: dict[str, type[GFCF]] = {"gfcf": GFCF, "bspm": BSPM}


def build_filter(model: str, params: Mapping[str, Any] | None = None, seed: int = 2020,
                 device: torch.device | str = "cpu") -> GFCF:
    """An unfitted ``gfcf`` or ``bspm`` filter.

    Args:
        model: ``gfcf`` or ``bspm``.
        params: constructor keyword arguments (``TrainConfig.filter``), e.g. ``{"k": 448, "beta": 0.2}``;
            what they leave out takes the model's defaults.
        seed: seed of the SVD solver.
        device: where scoring runs.

    Raises:
        ValueError: unknown model, or an argument the model does not take.
    """
    check_filter_params(model, params)
    return FILTER_MODELS[model](**{**dict(params or {}), "seed": seed, "device": device})


def check_filter_params(model: str, params: Mapping[str, Any] | None) -> None:
    """Refuse an unknown filter model, or a parameter its constructor does not take (naming those it does).

    Raises:
        ValueError: what is wrong, with the closest known parameter as a hint.
    """
    if model not in FILTER_MODELS:
        raise ValueError(f"{model!r} is not a graph-filter model; choose from {tuple(FILTER_MODELS)}")
    known = [name for name in inspect.signature(FILTER_MODELS[model]).parameters if name not in ("seed", "device")]
    for key in params or {}:
        if key not in known and key not in ("seed", "device"):  # those two always come from [train]
            close = difflib.get_close_matches(str(key), known, 1)
            raise ValueError(f"filter parameters for {model}: unknown {key!r}"
                             f"{f' (did you mean {close[0]!r}?)' if close else ''}; {model} takes {known}")


def load_filter(model: str, params: Mapping[str, Any] | None, train: sp.spmatrix,
                state: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> GFCF:
    """A fitted filter rebuilt from its training matrix and saved state (``filter.npz``), without an SVD."""
    return build_filter(model, params, device=device).load(train, state.get("vt"))
