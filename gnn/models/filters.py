"""Resolve a training-free graph-filter model (GF-CF, BSPM) by name, for training and for serving."""
from __future__ import annotations

import difflib
import inspect
import math
import numbers
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
    taken = check_filter_params(model, params)  # before the lookup: an unknown model is named
    return FILTER_MODELS[model](**taken, seed=seed, device=device)


def check_filter_params(model: str, params: Mapping[str, Any] | None) -> dict[str, Any]:
    """The model's constructor arguments of ``params`` (``seed`` and ``device`` left out: they come
    from ``[train]``), a whole float where a whole number goes made one (``k = 448.0``, as the config
    takes it for its own numbers, and as artifacts of older kgrec may hold it). Refuses an unknown
    filter model, a parameter its constructor does not take (naming those it does), one of another
    type than its default's (``k = "8"``, ``k = 8.5``), or a value the model refuses.

    Raises:
        ValueError: what is wrong, with the closest known parameter as a hint.
    """
    if model not in FILTER_MODELS:
        raise ValueError(f"{model!r} is not a graph-filter model; choose from {tuple(FILTER_MODELS)}")
    signature = inspect.signature(FILTER_MODELS[model]).parameters
    known = [name for name in signature if name not in ("seed", "device")]
    taken: dict[str, Any] = {}
    for key, value in (params or {}).items():
        if key in ("seed", "device"):  # those two always come from [train]
            continue
        if key not in known:
            close = difflib.get_close_matches(str(key), known, 1)
            raise ValueError(f"filter parameters for {model}: unknown {key!r}"
                             f"{f' (did you mean {close[0]!r}?)' if close else ''}; {model} takes {known}")
        default = signature[key].default  # its type is the one taken: k = 448 an int, beta = 0.2 a number
        number = isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)
        if number:  # numpy's numbers too
            value = int(value) if isinstance(default, int) and float(value).is_integer() else \
                float(value) if isinstance(default, float) else value
        fits = isinstance(value, str) if isinstance(default, str) else (
            number and (isinstance(value, int) or isinstance(default, float)))
        if not fits:
            kind = "text" if isinstance(default, str) else "a whole number" if isinstance(default, int) else "a number"
            raise ValueError(f"filter parameters for {model}: {key} must be {kind} (as {key} = {default!r}), "
                             f"got {value!r}")
        taken[key] = value
    FILTER_MODELS[model](**taken)  # its own checks of the values
    return taken


def load_filter(model: str, params: Mapping[str, Any] | None, train: sp.spmatrix,
                state: Mapping[str, np.ndarray], device: torch.device | str = "cpu") -> GFCF:
    """A fitted filter rebuilt from its training matrix and saved state (``filter.npz``), without an SVD."""
    return build_filter(model, params, device=device).load(train, state.get("vt"))
