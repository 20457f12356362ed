"""Resolve a training-free graph-filter model (GF-CF, BSPM) by name, for training and for serving."""
from __future__ import annotations

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
    if model not in FILTER_MODELS:
        raise ValueError(f"{model!r} is not a graph-filter model; choose from {tuple(FILTER_MODELS)}")
    try:
        return FILTER_MODELS[model](**{**dict(params or {}), "seed": seed, "device": device})
    except TypeError as e:
        raise ValueError(f"filter parameters for {model}: {e}") from e


def load_filter(model: str, params: Mapping[str, Any] | None, train: sp.spmatrix,
                state: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> GFCF:
    """A fitted filter rebuilt from its training matrix and saved state (``filter.npz``), without an SVD."""
    return build_filter(model, params, device=device).load(train, state.get("vt"))
