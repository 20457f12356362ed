"""Full-ranking evaluation: every item is a candidate except the user's known positives.

Protocol (LightGCN paper): for each user with at least one truth item, score all items, mask the
training positives (and any extra exclusions, e.g. validation positives when evaluating test), take
the top-K and average the per-user metrics of :mod:`gnn.metrics` over those users.
"""
from __future__ import annotations

import logging
from typing import Callable, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from . import metrics as M

logger = logging.getLogger(__name__)

ScoreFn = Callable[[torch.Tensor], torch.Tensor]


def to_csr(user: np.ndarray, item: np.ndarray, num_users: int, num_items: int) -> sp.csr_matrix:
    """Binary (num_users, num_items) CSR matrix of the pairs (duplicates collapse to 1)."""
    m = sp.csr_matrix((np.ones(len(user), dtype=np.float32), (np.asarray(user), np.asarray(item))),
                      shape=(num_users, num_items))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def as_csr(matrix: "sp.spmatrix | tuple[np.ndarray, np.ndarray]", num_items: int) -> sp.csr_matrix:
    """Accept a scipy sparse matrix or an ``(indptr, indices)`` pair and return a binary CSR matrix:
    every nonzero a positive; stored zeros (a weighted or masked matrix) are not."""
    if isinstance(matrix, tuple):
        indptr, indices = (np.asarray(a) for a in matrix)
        m = sp.csr_matrix((np.ones(len(indices), dtype=np.float32), indices, indptr),
                          shape=(len(indptr) - 1, num_items))  # a pair given twice is one positive
    else:
        m = sp.csr_matrix(matrix, dtype=np.float32, copy=True)
    m.sum_duplicates()
    m.eliminate_zeros()
    m.data[:] = 1.0
    return m


def _rows(m: sp.csr_matrix, users: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    """(row-in-batch, column) index tensors of the nonzeros of ``m[users]``."""
    sub = m[users].tocoo()
    return torch.from_numpy(sub.row.astype(np.int64)), torch.from_numpy(sub.col.astype(np.int64))


@torch.no_grad()
def evaluate(score_fn: ScoreFn,
             train: "sp.spmatrix | tuple[np.ndarray, np.ndarray]",
             truth: "sp.spmatrix | tuple[np.ndarray, np.ndarray]",
             ks: Sequence[int],
             num_items: int,
             batch_size: int = 2048,
             device: torch.device | str = "cpu",
             exclude: "sp.spmatrix | tuple[np.ndarray, np.ndarray] | None" = None,
             item_popularity: np.ndarray | None = None,
             item_embeddings: torch.Tensor | np.ndarray | None = None) -> dict[str, float]:
    """Full-ranking top-K metrics.

    Args:
        score_fn: maps a (B,) long tensor of user indices (on ``device``) to (B, num_items) scores
            (a fresh tensor: the masking writes into it).
        train: (U, I) training positives, masked out of the ranking.
        truth: (U, I) held-out positives; only users with at least one are evaluated.
        ks: cut-offs, e.g. ``[10, 20, 50]`` (each >= 1; repeats count once).
        num_items: I.
        batch_size: users scored at once.
        device: where scores and top-k run.
        exclude: optional extra (U, I) positives to mask (validation items when evaluating test).
        item_popularity: (I,) popularity for ``avg_pop@K``; defaults to training counts.
        item_embeddings: (I, d) vectors for ``ild@K`` (intra-list diversity); skipped when None.

    Returns:
        ``{"recall@K", "ndcg@K", "precision@K", "hit@K", "mrr@K", "coverage@K", "avg_pop@K",
        ["ild@K"], "num_users"}`` as floats.

    Raises:
        ValueError: empty ``ks``, a cut-off below 1, a matrix without ``num_items`` columns, no
            user with truth items, or ``train``/``exclude`` without the row of one who has.
    """
    if not ks:
        raise ValueError("ks must not be empty")
    ks = sorted({int(k) for k in ks})
    if ks[0] < 1:
        raise ValueError(f"cut-offs must be >= 1, got {ks[0]}")
    device = torch.device(device)
    kmax = min(ks[-1], num_items)
    train_m = as_csr(train, num_items)
    truth_m = as_csr(truth, num_items)
    excl_m = as_csr(exclude, num_items) if exclude is not None else None
    for name, m in (("train", train_m), ("truth", truth_m), ("exclude", excl_m)):
        if m is not None and m.shape[1] != num_items:
            raise ValueError(f"{name} has {m.shape[1]} item columns, expected num_items={num_items}")
    users = np.flatnonzero(np.diff(truth_m.indptr) > 0)
    if len(users) == 0:
        raise ValueError("no user has truth items")
    for name, m in (("train", train_m), ("exclude", excl_m)):  # each evaluated user's masked items are looked up
        if m is not None and m.shape[0] <= users[-1]:  # (rows past it, truth's empty ones, need not be there)
            raise ValueError(f"{name} has {m.shape[0]} user rows, but truth has items for user {users[-1]}")
    pop = np.asarray(train_m.sum(0)).ravel() if item_popularity is None else np.asarray(item_popularity)
    pop_t = torch.as_tensor(pop, dtype=torch.float64, device=device)
    emb_t = None if item_embeddings is None else torch.as_tensor(item_embeddings, device=device).float()

    sums: dict[str, float] = {}
    covered = {k: torch.zeros(num_items, dtype=torch.bool, device=device) for k in ks}
    for start in range(0, len(users), batch_size):
        ub = users[start:start + batch_size]
        u_t = torch.from_numpy(ub.astype(np.int64)).to(device)
        scores = score_fn(u_t).float()
        if scores.shape != (len(ub), num_items):
            raise ValueError(f"score_fn returned {tuple(scores.shape)}, expected {(len(ub), num_items)}")
        for m in (train_m, excl_m):
            if m is not None:
                r, c = _rows(m, ub)
                scores[r.to(device), c.to(device)] = -float("inf")
        scores.masked_fill_(scores.isnan(), -float("inf"))  # topk would rank NaN first
        values, top = torch.topk(scores, kmax, dim=1)  # (B, kmax)
        ranked = values > -float("inf")  # False where a user has fewer than kmax unmasked items (+inf ranks)
        r, c = _rows(truth_m, ub)
        gt = torch.zeros(len(ub), num_items, dtype=torch.bool, device=device)
        gt[r.to(device), c.to(device)] = True
        n_truth = gt.sum(1)
        hits_all = gt.gather(1, top) & ranked  # a masked item filling the list is never a hit
        for k in ks:
            hits, tk = hits_all[:, :k], top[:, :k]
            parts = {f"recall@{k}": M.recall(hits, n_truth), f"ndcg@{k}": M.ndcg(hits, n_truth),
                     f"precision@{k}": M.precision(hits, k), f"hit@{k}": M.hit_rate(hits),
                     f"mrr@{k}": M.mrr(hits), f"avg_pop@{k}": M.average_popularity(tk, pop_t, ranked[:, :k])}
            if emb_t is not None:
                parts[f"ild@{k}"] = M.intra_list_diversity(tk, emb_t, ranked[:, :k])
            for name, v in parts.items():
                sums[name] = sums.get(name, 0.0) + float(v.sum())
            covered[k][tk[ranked[:, :k]]] = True
    n = float(len(users))
    out = {name: v / n for name, v in sums.items()}
    for k in ks:
        out[f"coverage@{k}"] = float(covered[k].sum()) / num_items
    out["num_users"] = n
    return dict(sorted(out.items()))
