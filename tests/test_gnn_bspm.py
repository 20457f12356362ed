"""BSPM against the ODE solved densely (matrix exponential and explicit solver steps) on a tiny matrix."""
from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from scipy.linalg import expm

from gnn.models.bspm import BSPM


def _parts(R: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    du, di = R.sum(1), R.sum(0)
    dus = np.where(du > 0, du, 1.0) ** -0.5 * (du > 0)
    dis = np.where(di > 0, di, 1.0) ** -0.5 * (di > 0)
    Rn = dus[:, None] * R * dis[None, :]
    _, _, vt = np.linalg.svd(Rn)
    v = vt[:k].T
    di_inv = np.where(dis > 0, 1.0 / np.where(dis > 0, dis, 1.0), 0.0)
    pi = (dis[:, None] * v) @ (v.T * di_inv[None, :])
    return Rn.T @ Rn, pi


def _matrix() -> np.ndarray:
    rng = np.random.default_rng(1)
    R = (rng.random((30, 25)) < 0.2).astype(np.float64)
    R[0, :] = 0
    R[:, 3] = 0
    return R


def test_rk4_sharpening_matches_the_taylor_polynomial_and_approaches_the_exact_flow() -> None:
    R = _matrix()
    A, pi = _parts(R, 5)
    I = np.eye(A.shape[0])
    y0 = R @ A + 0.2 * R @ pi  # one Euler step of each blur process with T = 1
    h = 0.5
    step = I - h * A + (h * A) @ (h * A) / 2 - np.linalg.matrix_power(h * A, 3) / 6 + np.linalg.matrix_power(h * A, 4) / 24
    want = y0 @ np.linalg.matrix_power(step, 2)
    model = BSPM(k=5, beta=0.2, sharpen_time=1.0, sharpen_steps=2, sharpen_solver="rk4").fit(sp.csr_matrix(R))
    got = model.score(np.arange(30)).numpy()
    np.testing.assert_allclose(got, want, atol=1e-4)
    np.testing.assert_allclose(got, y0 @ expm(-1.0 * A), atol=2e-3)  # RK4 with h=0.5 is close to exact


@pytest.mark.parametrize("steps", [1, 3])
def test_euler_processes_match_explicit_steps(steps: int) -> None:
    R = _matrix()
    A, pi = _parts(R, 4)
    I = np.eye(A.shape[0])
    blur = R @ np.linalg.matrix_power(I + (2.0 / steps) * (A - I), steps)
    ideal = R @ np.linalg.matrix_power(I + (1.0 / steps) * (pi - I), steps)
    want = (blur + 0.3 * ideal) @ np.linalg.matrix_power(I - (1.5 / steps) * A, steps)
    model = BSPM(k=4, beta=0.3, blur_time=2.0, blur_steps=steps, idl_steps=steps, sharpen_time=1.5,
                 sharpen_steps=steps, sharpen_solver="euler").fit(sp.csr_matrix(R))
    np.testing.assert_allclose(model.score(np.arange(30)).numpy(), want, atol=1e-4)


def test_bspm_rejects_unknown_solver() -> None:
    with pytest.raises(ValueError, match="sharpen_solver"):
        BSPM(sharpen_solver="dopri5")
