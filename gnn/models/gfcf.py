"""GF-CF (Shen et al., CIKM 2021): a training-free graph filter for collaborative filtering."""
from __future__ import annotations

import logging
import time
import warnings

import numpy as np
import scipy.sparse as sp
import torch

logger = logging.getLogger(__name__)


MAX_INTERMEDIATE = 1 << 28  # float32 entries of a dense (users x rows) product in scoring: 1 GiB


class GFCF:
    r"""Linear item-item filter plus an ideal low-pass filter, fitted in closed form.

    With the binary interaction matrix :math:`R \in \{0,1\}^{U \times I}` and
    :math:`\tilde R = D_U^{-1/2} R D_I^{-1/2}`, a user's raw row :math:`r` is scored as

    .. math::
        s(r) = r \tilde R^\top \tilde R + \alpha \, r D_I^{-1/2} V_k V_k^\top D_I^{1/2}

    where :math:`V_k` (I, k) are the top-``k`` right singular vectors of :math:`\tilde R`
    (this is the authors' reference code; the linear term uses the raw row, as there).

    Args:
        k: rank of the ideal low-pass filter (0 disables it).
        alpha: weight of the low-pass term.
        svd_solver: ``arpack`` (``scipy.sparse.linalg.svds``, exact) or ``randomized``
            (``torch.svd_lowrank`` with oversampling).
        seed: seed for the solver's start vector / random projection.
        device: where scoring runs (the SVD runs on CPU for ``arpack``).
    """

    def __init__(self, k: int = 256, alpha: float = 0.3, svd_solver: str = "arpack", seed: int = 2020,
                 device: torch.device | str = "cpu") -> None:
        if svd_solver not in ("arpack", "randomized"):
            raise ValueError(f"unknown svd_solver {svd_solver!r}")
        if k < 0:
            raise ValueError("k must be >= 0")
        self.k = k
        self.alpha = alpha
        self.svd_solver = svd_solver
        self.seed = seed
        self.device = torch.device(device)
        self.R: sp.csr_matrix | None = None
        self._rn_sp: sp.csr_matrix | None = None  # (U, I) scipy, CPU scoring
        self._rn_t_sp: sp.csr_matrix | None = None  # (I, U) scipy
        self._rn: torch.Tensor | None = None  # (U, I) sparse CSR
        self._rn_t: torch.Tensor | None = None  # (I, U) sparse CSR
        self._di: torch.Tensor | None = None  # (I,) D_I^{-1/2}
        self._di_inv: torch.Tensor | None = None  # (I,) D_I^{1/2}
        self._vt: torch.Tensor | None = None  # (k, I)
        self.fit_seconds = 0.0

    def fit(self, train: sp.spmatrix) -> "GFCF":
        """Build the normalised matrix and its truncated SVD.

        Args:
            train: (U, I) training interactions (nonzero = positive).

        Returns:
            ``self``.
        """
        t0 = time.perf_counter()
        Rn = self._prepare(train)
        k = min(self.k, min(Rn.shape) - 1)
        vt = None
        if k > 0:
            if self.svd_solver == "arpack":
                from scipy.sparse.linalg import svds
                v0 = np.random.default_rng(self.seed).random(min(Rn.shape))
                _, sv, vt = svds(Rn, k=k, v0=v0)
                order = np.argsort(-sv)
                sv, vt = sv[order], vt[order]
            else:
                a = self._to_torch(Rn, layout=torch.sparse_coo)
                # every started GPU's state is saved and restored (asking for an unstarted one's
                # would start a CUDA context on it)
                cuda = list(range(torch.cuda.device_count())) if torch.cuda.is_initialized() else []
                with torch.random.fork_rng(devices=cuda):  # a seeded projection; the caller's RNG is untouched
                    # not torch.manual_seed: for an unstarted GPU it queues the seed, replacing the
                    # caller's queued one, and fork_rng cannot take it back
                    torch.default_generator.manual_seed(self.seed)
                    if a.is_cuda:  # started by the move there
                        with torch.cuda.device(a.device):
                            torch.cuda.manual_seed(self.seed)
                    _, sv_t, v = torch.svd_lowrank(a, q=min(k + 64, min(Rn.shape)), niter=6)
                sv, vt = sv_t[:k].cpu().numpy(), v[:, :k].t().cpu().numpy()
            # a k past R's rank brings null-space vectors, arbitrary and solver-dependent: a new
            # user's scores (score_rows) would move with them; training users' would not
            vt = vt[sv > 1e-6 * max(float(sv.max()), 1e-30)] if len(sv) else vt
        self._set_vt(vt)
        self.fit_seconds = time.perf_counter() - t0
        logger.info("%s fit in %.1fs (k=%d, %s)", type(self).__name__, self.fit_seconds, k, self.svd_solver)
        return self

    def load(self, train: sp.spmatrix, vt: np.ndarray | None) -> "GFCF":
        """Rebuild a fitted filter from its training matrix and the saved :meth:`state` (no SVD).

        Raises:
            ValueError: ``vt`` does not have one column per item.
        """
        Rn = self._prepare(train)
        if vt is not None and (vt.ndim != 2 or vt.shape[1] != Rn.shape[1]):
            raise ValueError(f"vt of shape {vt.shape} does not fit {Rn.shape[1]} items")
        self._set_vt(vt if vt is not None and vt.size else None)
        return self

    def state(self) -> dict[str, np.ndarray]:
        """What :meth:`load` needs besides the training matrix: ``vt`` (k, I), the top right singular vectors."""
        if self.R is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called first")
        vt = self._vt.cpu().numpy() if self._vt is not None else np.zeros((0, self.R.shape[1]), np.float32)
        return {"vt": vt}

    def spectral_embeddings(self, dim: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        r"""User (U, k) and item (I, k) factors of the ideal low-pass term, or of its leading ``dim``
        directions.

        ``user @ item.T`` equals :math:`R D_I^{-1/2} V_k V_k^\top D_I^{1/2}` (without ``alpha``); the
        item rows are :math:`V_k` scaled per item, so their cosine similarity is that of the items'
        spectral coordinates. Models write these to Neo4j's vector index.
        """
        if self.R is None or self._vt is None:
            raise RuntimeError(f"{type(self).__name__} has no low-pass term (fit it with k > 0)")
        vt = self._vt.cpu().numpy()[:dim]  # rows by singular value, largest first
        user = np.asarray((self.R @ sp.diags(self._di.cpu().numpy())) @ vt.T, dtype=np.float32)
        item = np.ascontiguousarray((vt * self._di_inv.cpu().numpy()).T)
        return user, item

    def _set_vt(self, vt: np.ndarray | None) -> None:
        self._vt = None if vt is None else torch.from_numpy(np.ascontiguousarray(vt, dtype=np.float32)).to(self.device)

    def _prepare(self, train: sp.spmatrix) -> sp.csr_matrix:
        """Binary ``R``, degree scalings and the normalised matrix in the scoring layout; returns R~ (float64)."""
        R = sp.csr_matrix(train, dtype=np.float64, copy=True)
        R.sum_duplicates()
        R.eliminate_zeros()  # a stored 0 is no interaction
        R.data[:] = 1.0
        du = np.asarray(R.sum(1)).ravel()
        di = np.asarray(R.sum(0)).ravel()
        du_is = np.zeros_like(du)
        np.power(du, -0.5, out=du_is, where=du > 0)
        di_is = np.zeros_like(di)
        np.power(di, -0.5, out=di_is, where=di > 0)
        Rn = sp.diags(du_is) @ R @ sp.diags(di_is)
        self.R = R.astype(np.float32)
        if self.device.type == "cpu":
            self._rn_sp = sp.csr_matrix(Rn, dtype=np.float32)
            self._rn_t_sp = sp.csr_matrix(Rn.T, dtype=np.float32)
        else:
            self._rn = self._to_torch(Rn)
            self._rn_t = self._to_torch(Rn.T)
        self._di = torch.from_numpy(di_is.astype(np.float32)).to(self.device)
        di_inv = np.zeros_like(di_is)
        np.divide(1.0, di_is, out=di_inv, where=di_is > 0)
        self._di_inv = torch.from_numpy(di_inv.astype(np.float32)).to(self.device)
        return Rn

    def score(self, user: np.ndarray | torch.Tensor) -> torch.Tensor:
        """(B, I) float32 scores on ``device`` for (B,) user indices.

        Raises:
            RuntimeError: called before :meth:`fit`.
        """
        return self.score_rows(self._rows(user))

    def score_rows(self, r_sp: sp.csr_matrix) -> torch.Tensor:
        """(B, I) float32 scores for (B, I) raw interaction rows, trained users or not.

        The filter needs no user parameters, so a new user's row (the items they interacted
        with) is scored exactly like a training user's. Rows are scored in slices whose dense
        (users x rows) intermediate stays within :data:`MAX_INTERMEDIATE` entries (a million users
        by an evaluation batch of 2,048 would be 8 GB at once).
        """
        r_sp = sp.csr_matrix(r_sp, dtype=np.float32)
        step = max(1, MAX_INTERMEDIATE // max(1, self.R.shape[0] if self.R is not None else 1))
        if r_sp.shape[0] <= step:
            return self._score_rows(r_sp)
        return torch.cat([self._score_rows(r_sp[i:i + step]) for i in range(0, r_sp.shape[0], step)])

    def _score_rows(self, r_sp: sp.csr_matrix) -> torch.Tensor:
        """:meth:`score_rows` of one slice of float32 CSR rows."""
        r = torch.from_numpy(r_sp.toarray()).to(self.device)  # (B, I) raw rows
        if self._rn_sp is not None:
            # CPU: sparse-sparse products (r R~^T) R~ are the fastest measured path
            out = torch.from_numpy(((r_sp @ self._rn_t_sp) @ self._rn_sp).toarray())
        else:
            # accelerator: (R~^T (R~ r^T))^T with two sparse-dense products
            out = torch.sparse.mm(self._rn_t, torch.sparse.mm(self._rn, r.t().contiguous())).t()
        if self._vt is not None and self.alpha != 0:
            ideal = ((r * self._di) @ self._vt.t()) @ self._vt * self._di_inv
            out = out + self.alpha * ideal
        return out.contiguous()

    def _rows(self, user: np.ndarray | torch.Tensor) -> sp.csr_matrix:
        """The (B, I) raw training rows of ``user``.

        Raises:
            RuntimeError: called before :meth:`fit`.
        """
        if self.R is None:
            raise RuntimeError(f"{type(self).__name__}.fit must be called first")
        return self.R[user.cpu().numpy() if isinstance(user, torch.Tensor) else np.asarray(user)]

    def _to_torch(self, m: sp.spmatrix, layout: torch.layout = torch.sparse_csr) -> torch.Tensor:
        coo = sp.coo_matrix(m)
        idx = torch.from_numpy(np.stack([coo.row, coo.col]).astype(np.int64))
        t = torch.sparse_coo_tensor(idx, torch.from_numpy(coo.data.astype(np.float32)), coo.shape,
                                    check_invariants=False).coalesce()
        if layout == torch.sparse_csr:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
                t = t.to_sparse_csr()
        return t.to(self.device)

    def recommend(self, user: np.ndarray | torch.Tensor, k: int, exclude_train: bool = True) -> torch.Tensor:
        """(B, min(k, I)) top items per user, training items excluded by default (a user with fewer
        than k other items gets excluded ones, scored -inf, at the end of the row)."""
        s = self.score(user)
        if exclude_train:
            u = user.cpu().numpy() if isinstance(user, torch.Tensor) else np.asarray(user)
            sub = self.R[u].tocoo()
            s[torch.from_numpy(sub.row.astype(np.int64)).to(s.device),
              torch.from_numpy(sub.col.astype(np.int64)).to(s.device)] = -float("inf")
        return s.topk(min(k, s.shape[1]), dim=1).indices

    def __repr__(self) -> str:
        shape = None if self.R is None else self.R.shape
        return f"GFCF(k={self.k}, alpha={self.alpha}, solver={self.svd_solver}, fitted={shape})"
