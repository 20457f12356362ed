"""Vectorised negative sampling for BPR (uniform, popularity, hard)."""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch

logger = logging.getLogger(__name__)

STRATEGIES = ("uniform", "popularity", "hard")
POSITIVE_SAMPLING = ("interaction", "user")


def check_positive_sampling(unit: str) -> None:
    """Raise ValueError unless ``unit`` is one of :data:`POSITIVE_SAMPLING`."""
    if unit not in POSITIVE_SAMPLING:
        raise ValueError(f"unknown positive_sampling {unit!r}; choose from {POSITIVE_SAMPLING}")


def epoch_pairs(train: sp.csr_matrix, unit: str, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One epoch's (user, positive item) pairs, as many as there are training pairs.

    ``interaction`` shuffles the training pairs (each is visited once); ``user`` draws a uniform
    user among those with training items, then one of that user's items uniformly, so every user
    weighs the same in the loss, as in the metrics (the LightGCN reference code's sampler).
    """
    check_positive_sampling(unit)
    deg = np.diff(train.indptr)
    if unit == "interaction":
        perm = rng.permutation(train.nnz)
        users = np.repeat(np.arange(train.shape[0], dtype=np.int64), deg)
        return users[perm], train.indices[perm].astype(np.int64)
    active = np.flatnonzero(deg > 0)
    users = active[rng.integers(0, len(active), train.nnz)].astype(np.int64)
    offset = (rng.random(train.nnz) * deg[users]).astype(np.int64)
    return users, train.indices[train.indptr[users] + offset].astype(np.int64)


class NegativeSampler:
    """Draw one negative item per (user, positive) pair, never one of the user's training items.

    Args:
        train: (U, I) binary CSR of training positives.
        strategy: ``uniform`` (p(i) = 1/I), ``popularity`` (p(i) ∝ deg(i)^beta) or ``hard``
            (the highest-scoring of ``num_candidates`` uniform draws under the given embeddings).
        rng: numpy generator (the trainer seeds it).
        beta: popularity exponent.
        num_candidates: candidates per pair for ``hard``.
        max_rounds: re-draw rounds for collisions with positives (rare leftovers are kept).
    """

    def __init__(self, train: sp.csr_matrix, strategy: str, rng: np.random.Generator, beta: float = 0.75,
                 num_candidates: int = 16, max_rounds: int = 10) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown negative_sampling {strategy!r}; choose from {STRATEGIES}")
        self.strategy = strategy
        self.rng = rng
        self.num_items = train.shape[1]
        self.num_candidates = num_candidates
        self.max_rounds = max_rounds
        coo = train.tocoo()
        self._keys = np.unique(coo.row.astype(np.int64) * self.num_items + coo.col.astype(np.int64))
        deg = np.asarray(train.sum(0)).ravel().astype(np.float64)
        w = np.power(deg, beta)
        w = w + (1e-12 if w.sum() == 0 else 0.0)
        self._cdf = np.cumsum(w / w.sum())

    def is_positive(self, user: np.ndarray, item: np.ndarray) -> np.ndarray:
        """(B,) bool: whether each (user, item) is a training positive."""
        key = user.astype(np.int64) * self.num_items + item.astype(np.int64)
        pos = np.searchsorted(self._keys, key)
        pos = np.minimum(pos, len(self._keys) - 1)
        return self._keys[pos] == key

    def _draw(self, n: int, popularity: bool) -> np.ndarray:
        if popularity:
            return np.minimum(np.searchsorted(self._cdf, self.rng.random(n)), self.num_items - 1)
        return self.rng.integers(0, self.num_items, n)

    def _rejecting(self, user: np.ndarray, popularity: bool) -> np.ndarray:
        item = self._draw(len(user), popularity)
        for r in range(2 * self.max_rounds):
            bad = np.flatnonzero(self.is_positive(user, item))
            if len(bad) == 0:
                break
            # after max_rounds popularity draws, fall back to uniform draws for the leftovers
            item[bad] = self._draw(len(bad), popularity and r < self.max_rounds)
        return item

    def sample(self, user: np.ndarray, user_emb: torch.Tensor | None = None,
               item_emb: torch.Tensor | None = None) -> np.ndarray:
        """Negatives for (B,) ``user``; ``hard`` needs (U, d) / (I, d) embeddings of the current model."""
        if self.strategy != "hard":
            return self._rejecting(user, self.strategy == "popularity")
        if user_emb is None or item_emb is None:
            raise ValueError("hard negative sampling needs user and item embeddings")
        c = self.num_candidates
        cand = self._rejecting(np.repeat(user, c), False).reshape(len(user), c)
        with torch.no_grad():
            dev = item_emb.device
            u = user_emb[torch.from_numpy(user).to(dev)]  # (B, d)
            e = item_emb[torch.from_numpy(cand).to(dev)]  # (B, c, d)
            best = (e @ u.unsqueeze(-1)).squeeze(-1).argmax(1).cpu().numpy()
        return cand[np.arange(len(user)), best]
