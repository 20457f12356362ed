"""BSPM (Choi et al., SIGIR 2023): blurring-sharpening process models, a training-free graph filter."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

from .gfcf import GFCF

logger = logging.getLogger(__name__)

SOLVERS = ("euler", "rk4")


class BSPM(GFCF):
    r"""Blur a user's row with the item-item heat equation, then sharpen it by running it backwards.

    With :math:`A = \tilde R^\top \tilde R` (the GF-CF linear filter) and the ideal low-pass
    :math:`\Pi = D_I^{-1/2} V_k V_k^\top D_I^{1/2}`, a raw row :math:`r` is scored by solving

    .. math::
        \text{blur:}\ \dot x = x A - x,\ x(0) = r, \qquad
        \text{ideal:}\ \dot z = z \Pi - z,\ z(0) = r, \\
        \text{sharpen:}\ \dot y = -y A,\ y(0) = x(T_b) + \beta\, z(T_{idl}),

    and returning :math:`y(T_s)`. Every right-hand side is linear, so the ODE solvers reduce to
    polynomials in :math:`A`: one Euler step is :math:`I + h(A - I)`, one RK4 step of
    :math:`\dot y = -yA` is the degree-4 Taylor polynomial of :math:`e^{-hA}` (evaluated by
    Horner's rule). With ``blur_time = 1``, one blur step and one ideal step this is the authors'
    ``BSPM`` with ``final_sharpening`` (their Gowalla setting: k=448, beta=0.2, rk4, T_s=2.5).

    Args:
        k: rank of the ideal low-pass filter.
        beta: weight of the ideal low-pass term (GF-CF's alpha).
        blur_time, blur_steps: :math:`T_b` and its Euler steps.
        idl_time, idl_steps: :math:`T_{idl}` and its Euler steps.
        sharpen_time, sharpen_steps, sharpen_solver: :math:`T_s`, its steps, ``euler`` or ``rk4``.
        svd_solver, seed, device: as :class:`GFCF`.
    """

    def __init__(self, k: int = 448, beta: float = 0.2, blur_time: float = 1.0, blur_steps: int = 1,
                 idl_time: float = 1.0, idl_steps: int = 1, sharpen_time: float = 2.5, sharpen_steps: int = 1,
                 sharpen_solver: str = "rk4", svd_solver: str = "arpack", seed: int = 2020,
                 device: torch.device | str = "cpu") -> None:
        super().__init__(k=k, alpha=beta, svd_solver=svd_solver, seed=seed, device=device)
        if sharpen_solver not in SOLVERS:
            raise ValueError(f"unknown sharpen_solver {sharpen_solver!r}; choose from {SOLVERS}")
        if min(blur_steps, idl_steps, sharpen_steps) < 1:
            raise ValueError("every process needs at least one step")
        self.beta = beta
        self.blur_time, self.blur_steps = blur_time, blur_steps
        self.idl_time, self.idl_steps = idl_time, idl_steps
        self.sharpen_time, self.sharpen_steps, self.sharpen_solver = sharpen_time, sharpen_steps, sharpen_solver
        self._rn_csr: torch.Tensor | None = None
        self._rn_t_csr: torch.Tensor | None = None

    def _prepare(self, train: sp.spmatrix) -> sp.csr_matrix:
        """GF-CF's preparation plus torch CSR copies of R~ and R~^T for the dense products."""
        Rn = super()._prepare(train)
        if self._rn_sp is not None:
            self._rn_csr = self._to_torch(self._rn_sp)
            self._rn_t_csr = self._to_torch(self._rn_t_sp)
        else:
            self._rn_csr, self._rn_t_csr = self._rn, self._rn_t
        return Rn

    def _times_a(self, cols: torch.Tensor) -> torch.Tensor:
        """:math:`(x A)^\\top` for column-stacked rows ``cols`` (I, B): :math:`\\tilde R^\\top (\\tilde R\\, x^\\top)`."""
        return torch.sparse.mm(self._rn_t_csr, torch.sparse.mm(self._rn_csr, cols))

    def _times_pi(self, cols: torch.Tensor) -> torch.Tensor:
        r""":math:`(x \Pi)^\top` for column-stacked rows (I, B)."""
        di, di_inv = self._di.unsqueeze(1), self._di_inv.unsqueeze(1)
        return (self._vt.t() @ (self._vt @ (cols * di))) * di_inv

    def _score_rows(self, r_sp: sp.csr_matrix) -> torch.Tensor:
        """(B, I) float32 scores for one slice of (B, I) raw interaction rows (GFCF.score_rows)."""
        r = torch.from_numpy(r_sp.T.toarray()).to(self.device)  # (I, B)
        # blur: Euler steps of x' = xA - x (one unit step is the GF-CF linear filter r A)
        h = self.blur_time / self.blur_steps
        x = r
        for _ in range(self.blur_steps):
            x = x + h * (self._times_a(x) - x)
        y = x
        if self._vt is not None and self.beta != 0:
            h = self.idl_time / self.idl_steps
            z = r
            for _ in range(self.idl_steps):
                z = z + h * (self._times_pi(z) - z)
            y = y + self.beta * z
        # sharpen: y' = -yA, solved forward (the reverse of the blur's heat flow)
        h = self.sharpen_time / self.sharpen_steps
        for _ in range(self.sharpen_steps):
            if self.sharpen_solver == "euler":
                y = y - h * self._times_a(y)
            else:  # RK4 on a linear system = Taylor polynomial of exp(-hA) to degree 4 (Horner)
                w = y
                for j in (4, 3, 2, 1):
                    w = y - (h / j) * self._times_a(w)
                y = w
        return y.t().contiguous()

    def __repr__(self) -> str:
        shape = None if self.R is None else self.R.shape
        return (f"BSPM(k={self.k}, beta={self.beta}, T_b={self.blur_time}, T_s={self.sharpen_time}, "
                f"sharpen={self.sharpen_solver}x{self.sharpen_steps}, fitted={shape})")
