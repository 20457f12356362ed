"""BPR training triples drawn on the training device: positives by interaction or by user, negatives
uniform, by popularity or hard.

Everything is a torch operation on one device with one seeded ``torch.Generator``, so a CUDA run
draws a whole epoch on the GPU in a few kernels and no step waits on the host.
"""
from __future__ import annotations

import logging

import numpy as np
import scipy.sparse as sp
import torch
from torch import Tensor

logger = logging.getLogger(__name__)

STRATEGIES = ("uniform", "popularity", "hard")
POSITIVE_SAMPLING = ("interaction", "user")


def check_positive_sampling(unit: str) -> None:
    """Raise ValueError unless ``unit`` is one of :data:`POSITIVE_SAMPLING`."""
    if unit not in POSITIVE_SAMPLING:
        raise ValueError(f"unknown positive_sampling {unit!r}; choose from {POSITIVE_SAMPLING}")


def make_generator(seed: int, device: torch.device | str = "cpu") -> torch.Generator:
    """A ``torch.Generator`` on ``device`` seeded with ``seed``."""
    gen = torch.Generator(device=torch.device(device))
    gen.manual_seed(int(seed))
    return gen


class TrainPairs:
    """A user-item training matrix as CSR index tensors on the device.

    Args:
        train: (U, I) binary CSR of training positives.
        device: where the tensors live (the generator passed to the methods must live there too).
    """

    def __init__(self, train: sp.csr_matrix, device: torch.device | str = "cpu") -> None:
        device = torch.device(device)
        if not (sp.issparse(train) and train.format == "csr" and train.has_canonical_format and train.data.all()):
            train = sp.csr_matrix(train, copy=True)  # the searches below need sorted, distinct positives
            train.sum_duplicates()
            train.eliminate_zeros()
        self.num_users, self.num_items = train.shape
        self.nnz = int(train.nnz)
        deg = np.diff(train.indptr).astype(np.int64)
        self.indptr = torch.from_numpy(train.indptr.astype(np.int64)).to(device)
        self.indices = torch.from_numpy(train.indices.astype(np.int64)).to(device)
        self.row = torch.from_numpy(np.repeat(np.arange(self.num_users, dtype=np.int64), deg)).to(device)
        self.degree = torch.from_numpy(deg).to(device)
        self.active = torch.from_numpy(np.flatnonzero(deg > 0).astype(np.int64)).to(device)
        # sorted (user * I + item) keys: membership by binary search
        self.keys = torch.sort(self.row * self.num_items + self.indices).values
        # keys less each item's rank within its user: non-decreasing, so the r-th item a user does
        # not hold is found by binary search too (non_positive)
        rank_in_row = torch.arange(self.nnz, device=device) - self.indptr[self.keys // max(self.num_items, 1)]
        self._gaps = self.keys - rank_in_row

    def epoch_pairs(self, unit: str, gen: torch.Generator) -> tuple[Tensor, Tensor]:
        """One epoch's (user, positive item) pairs, as many as there are training pairs.

        ``interaction`` shuffles the training pairs (each is visited once); ``user`` draws a uniform
        user among those with training items, then one of that user's items uniformly, so every user
        weighs the same in the loss, as in the metrics (the LightGCN reference code's sampler).
        """
        check_positive_sampling(unit)
        dev = self.indices.device
        if unit == "interaction":
            perm = torch.randperm(self.nnz, generator=gen, device=dev)
            return self.row[perm], self.indices[perm]
        users = self.active[torch.randint(0, len(self.active), (self.nnz,), generator=gen, device=dev)]
        offset = (torch.rand(self.nnz, generator=gen, device=dev, dtype=torch.float64)
                  * self.degree[users]).long()
        return users, self.indices[self.indptr[users] + offset]

    def non_positive(self, user: Tensor, rank: Tensor) -> Tensor:
        """The ``rank``-th (from 0) item that is not one of ``user``'s training items, elementwise;
        ``rank`` must be below ``num_items - degree[user]``."""
        return rank + torch.searchsorted(self._gaps, user * self.num_items + rank, right=True) - self.indptr[user]

    def is_positive(self, user: Tensor, item: Tensor) -> Tensor:
        """Bool tensor of ``user``'s shape: whether each (user, item) is a training positive."""
        key = user * self.num_items + item
        pos = torch.searchsorted(self.keys, key).clamp_(max=len(self.keys) - 1)
        return self.keys[pos] == key


class NegativeSampler:
    """Draw one negative item per (user, positive) pair, never one of the user's training items.

    Args:
        train: the training pairs (:class:`TrainPairs`, on the device the draws happen on).
        strategy: ``uniform`` (p(i) = 1/I), ``popularity`` (p(i) ∝ deg(i)^beta) or ``hard``
            (the highest-scoring of ``num_candidates`` uniform draws under the given embeddings).
        gen: the seeded generator of the run, on the same device.
        beta: popularity exponent.
        num_candidates: candidates per pair for ``hard``.
        max_rounds: re-draw rounds for collisions with positives; what is left after twice as many
            (the first half by popularity) is drawn uniformly from the user's non-positives exactly.
            A user holding every item has no negative: their draws stay positives.
        chunk: pairs scored at once by ``hard`` (bounds its (chunk, candidates, d) gather).

    Raises:
        ValueError: unknown strategy.
    """

    def __init__(self, train: TrainPairs, strategy: str, gen: torch.Generator, beta: float = 0.75,
                 num_candidates: int = 16, max_rounds: int = 10, chunk: int = 65536) -> None:
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown negative_sampling {strategy!r}; choose from {STRATEGIES}")
        self.strategy = strategy
        self.train = train
        self.gen = gen
        self.num_items = train.num_items
        self.num_candidates = num_candidates
        self.max_rounds = max_rounds
        self.chunk = chunk
        # counted on the host: CUDA's bincount has no deterministic kernel ([train] deterministic)
        deg = torch.bincount(train.indices.cpu(), minlength=train.num_items).double().to(train.indices.device)
        w = deg.pow(beta)
        w = w + (1e-12 if float(w.sum()) == 0 else 0.0)
        self._cdf = torch.cumsum(w / w.sum(), 0)

    def _draw(self, n: int, popularity: bool) -> Tensor:
        dev = self._cdf.device
        if popularity:
            u = torch.rand(n, generator=self.gen, device=dev, dtype=torch.float64)
            return torch.searchsorted(self._cdf, u).clamp_(max=self.num_items - 1)
        return torch.randint(0, self.num_items, (n,), generator=self.gen, device=dev)

    def _rejecting(self, user: Tensor, popularity: bool) -> Tensor:
        item = self._draw(len(user), popularity)
        bad = torch.arange(len(user), device=user.device)
        for r in range(2 * self.max_rounds + 1):
            bad = bad[self.train.is_positive(user[bad], item[bad])]
            if len(bad) == 0 or r == 2 * self.max_rounds:
                break
            # after max_rounds popularity draws, fall back to uniform draws for the leftovers
            item[bad] = self._draw(len(bad), popularity and r < self.max_rounds)
        if len(bad):  # heavy users: uniform over exactly the items they do not hold
            free = self.num_items - self.train.degree[user[bad]]
            bad, free = bad[free > 0], free[free > 0]
            rank = (torch.rand(len(bad), generator=self.gen, device=bad.device, dtype=torch.float64) * free).long()
            item[bad] = self.train.non_positive(user[bad], rank)
        return item

    def sample(self, user: Tensor, user_emb: Tensor | None = None, item_emb: Tensor | None = None) -> Tensor:
        """Negatives for the (B,) long tensor ``user``, on its device.

        ``hard`` needs (U, d) / (I, d) embeddings of the current model, on the same device.
        """
        if self.strategy != "hard":
            return self._rejecting(user, self.strategy == "popularity")
        if user_emb is None or item_emb is None:
            raise ValueError("hard negative sampling needs user and item embeddings")
        c = self.num_candidates
        out = []
        with torch.no_grad():
            for s in range(0, len(user), self.chunk):
                ub = user[s:s + self.chunk]
                cand = self._rejecting(ub.repeat_interleave(c), False).view(len(ub), c)
                score = (item_emb[cand] @ user_emb[ub].unsqueeze(-1)).squeeze(-1)  # (b, c)
                out.append(cand.gather(1, score.argmax(1, keepdim=True)).squeeze(1))
        return torch.cat(out) if out else user.new_zeros(0)
