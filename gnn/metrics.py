"""Top-K ranking metrics on hit matrices (LightGCN-paper definitions).

All per-user functions take ``hits``: a (B, K) float/bool tensor where ``hits[b, r]`` is 1 when the
item ranked at position ``r`` (0-based) for user ``b`` is relevant, and ``num_truth``: (B,) the
number of relevant items of each user. They return (B,) per-user values; average them yourself.
"""
from __future__ import annotations

import logging

import torch

logger = logging.getLogger(__name__)


def _discounts(k: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(k,) discounts ``1 / log2(r + 2)`` for 0-based ranks ``r``."""
    return 1.0 / torch.log2(torch.arange(2, k + 2, dtype=torch.float64, device=device))


def recall(hits: torch.Tensor, num_truth: torch.Tensor) -> torch.Tensor:
    """Recall@K = |top-K ∩ T| / |T|. Returns (B,) (0 for users with no truth)."""
    n = num_truth.to(torch.float64)
    return hits.to(torch.float64).sum(1) / n.clamp(min=1)


def precision(hits: torch.Tensor, k: int | None = None) -> torch.Tensor:
    """Precision@K = |top-K ∩ T| / K. Returns (B,). ``k`` is the K asked for, when the lists are
    shorter (a catalogue of fewer than K items); by default the lists' length."""
    return hits.to(torch.float64).sum(1) / (hits.shape[1] if k is None else k)


def hit_rate(hits: torch.Tensor) -> torch.Tensor:
    """HitRate@K = 1 if any of the top-K is relevant else 0. Returns (B,)."""
    return (hits.to(torch.float64).sum(1) > 0).to(torch.float64)


def ndcg(hits: torch.Tensor, num_truth: torch.Tensor) -> torch.Tensor:
    """NDCG@K with binary gains.

    DCG = Σ_{r<K} hit_r / log2(r + 2); IDCG = Σ_{r < min(|T|, K)} 1 / log2(r + 2).
    Returns (B,) (0 for users with no truth).
    """
    k = hits.shape[1]
    disc = _discounts(k, hits.device)
    dcg = (hits.to(torch.float64) * disc).sum(1)
    ideal = torch.cumsum(disc, 0)
    n = num_truth.clamp(max=k).to(torch.long)
    idcg = torch.where(n > 0, ideal[(n - 1).clamp(min=0)], torch.ones_like(dcg))
    return torch.where(n > 0, dcg / idcg, torch.zeros_like(dcg))


def mrr(hits: torch.Tensor) -> torch.Tensor:
    """MRR@K = 1 / (1-based rank of the first relevant item in top-K), 0 when none. Returns (B,)."""
    h = hits.to(torch.bool)
    k = h.shape[1]
    ranks = torch.arange(1, k + 1, dtype=torch.float64, device=h.device).expand(h.shape[0], k)
    first = torch.where(h, ranks, torch.full_like(ranks, float("inf"))).min(1).values
    return torch.where(torch.isfinite(first), 1.0 / first, torch.zeros_like(first))


def coverage(top_items: torch.Tensor, num_items: int) -> float:
    """Catalogue coverage: |∪_u top-K(u)| / num_items. ``top_items``: (B, K) item indices."""
    if num_items <= 0:
        raise ValueError("num_items must be positive")
    return float(torch.unique(top_items).numel()) / num_items


def average_popularity(top_items: torch.Tensor, popularity: torch.Tensor,
                       listed: torch.Tensor | None = None) -> torch.Tensor:
    """Mean popularity of each user's recommended items.

    Args:
        top_items: (B, K) item indices.
        popularity: (I,) popularity of every item (e.g. training interaction counts).
        listed: optional (B, K) bool, False where a position holds no recommendation (a masked
            item filling a list longer than the user's unmasked items); those are left out.

    Returns:
        (B,) mean of ``popularity[top_items[b]]`` over the listed positions (0 for none).
    """
    pop = popularity.to(torch.float64)[top_items]
    if listed is None:
        return pop.mean(1)
    listed = listed.to(torch.float64)
    return (pop * listed).sum(1) / listed.sum(1).clamp(min=1)


def intra_list_diversity(top_items: torch.Tensor, item_embeddings: torch.Tensor,
                         listed: torch.Tensor | None = None) -> torch.Tensor:
    """Intra-list diversity: mean pairwise cosine distance within each list.

    ILD(u) = 1 / (K (K - 1)) Σ_{i ≠ j} (1 - cos(e_i, e_j)).

    Args:
        top_items: (B, K) item indices.
        item_embeddings: (I, d) item vectors.
        listed: optional (B, K) bool, as for :func:`average_popularity`: K counts listed items only.

    Returns:
        (B,) diversity per user (0 for a list of fewer than 2 items).
    """
    e = torch.nn.functional.normalize(item_embeddings.to(torch.float64)[top_items], dim=-1)  # (B, K, d)
    sim = e @ e.transpose(1, 2)  # (B, K, K)
    if listed is None:
        listed = torch.ones(top_items.shape, dtype=torch.bool, device=top_items.device)
    m = listed.to(torch.float64)
    sim = sim * m.unsqueeze(2) * m.unsqueeze(1)
    n = m.sum(1)
    pairs = n * (n - 1)
    off = sim.sum((1, 2)) - sim.diagonal(dim1=1, dim2=2).sum(1)
    return torch.where(pairs > 0, 1.0 - off / pairs.clamp(min=1), torch.zeros_like(off))
