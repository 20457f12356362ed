"""What every embedding recommender shares: dot-product scores and masked top-k from ``get_embedding``."""
from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn


class EmbeddingRecommender(nn.Module):
    """Base for models whose ``get_embedding(graph)`` returns ``(user (U, d), item (I, d))``;
    score(u, i) is the dot product."""

    def get_embedding(self, graph: Any) -> tuple[Tensor, Tensor]:  # pragma: no cover - abstract
        raise NotImplementedError

    def forward(self, graph: Any, user: Tensor, item: Tensor) -> Tensor:
        """Scores of pairs: (B,) ``user`` and (B,) ``item`` indices -> (B,) dot products."""
        ue, ie = self.get_embedding(graph)
        return (ue[user] * ie[item]).sum(-1)

    @torch.no_grad()
    def recommend(self, graph: Any, user: Tensor, k: int, exclude: Tensor | None = None) -> Tensor:
        """(B, min(k, I)) item indices, best first; ``exclude`` is an optional (B, I) mask of items never
        to recommend (a user with fewer than k others gets excluded ones, scored -inf, at the end)."""
        ue, ie = self.get_embedding(graph)
        scores = ue[user] @ ie.t()
        if exclude is not None:
            scores = scores.masked_fill(exclude, -float("inf"))
        return scores.topk(min(k, scores.shape[1]), dim=1).indices
