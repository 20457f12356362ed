"""GF-CF against a dense reference implementation of the formula on a tiny matrix."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnn.models.gfcf import GFCF


def _dense_reference(R: np.ndarray, k: int, alpha: float) -> np.ndarray:
    du, di = R.sum(1), R.sum(0)
    dus = np.where(du > 0, du, 1.0) ** -0.5 * (du > 0)
    dis = np.where(di > 0, di, 1.0) ** -0.5 * (di > 0)
    Rn = dus[:, None] * R * dis[None, :]
    linear = R @ Rn.T @ Rn
    _, _, vt = np.linalg.svd(Rn)
    v = vt[:k].T
    di_inv = np.where(dis > 0, 1.0 / np.where(dis > 0, dis, 1.0), 0.0)
    ideal = (R * dis) @ v @ v.T * di_inv
    return linear + alpha * ideal


@pytest.mark.parametrize("solver", ["arpack", "randomized"])
def test_gfcf_matches_dense_formula(solver: str) -> None:
    rng = np.random.default_rng(0)
    R = (rng.random((30, 25)) < 0.2).astype(np.float64)
    R[0, :] = 0  # a user without interactions
    R[:, 3] = 0  # an item without interactions
    model = GFCF(k=5, alpha=0.3, svd_solver=solver).fit(sp.csr_matrix(R))
    users = np.arange(30)
    got = model.score(users).numpy()
    want = _dense_reference(R, 5, 0.3)
    tol = 1e-4 if solver == "arpack" else 5e-2
    np.testing.assert_allclose(got, want, atol=tol)
    top = model.recommend(torch.arange(30), k=3)
    assert top.shape == (30, 3)
    for u in range(1, 30):
        assert not R[u, top[u].numpy()].any()  # training items excluded
    assert "GFCF(k=5" in repr(model)


def test_gfcf_errors() -> None:
    with pytest.raises(ValueError):
        GFCF(svd_solver="nope")
    with pytest.raises(RuntimeError):
        GFCF().score(np.array([0]))
