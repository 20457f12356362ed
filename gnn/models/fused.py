"""LightGCN whose item ego embeddings fuse id embeddings with projected text embeddings."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from .lightgcn import LightGCN

logger = logging.getLogger(__name__)

FUSIONS = ("sum", "concat", "gate")


class FusedLightGCN(LightGCN):
    r"""LightGCN with text-aware item embeddings.

    With item id embeddings :math:`e_i`, item text vectors :math:`t_i \in \mathbb{R}^{T}` and
    :math:`p_i = W_t t_i` (a linear projection to d), the item ego embedding is

    - ``sum``:    :math:`e_i + p_i`
    - ``concat``: :math:`W_c [e_i \| p_i]`
    - ``gate``:   :math:`g \odot e_i + (1 - g) \odot p_i`, :math:`g = \sigma(W_g [e_i \| p_i])`

    User ego embeddings are id embeddings; propagation, scoring and loss are LightGCN's.

    Args:
        num_users: U.
        num_items: I.
        text_embeddings: (I, T) item text vectors (kept as a fixed buffer).
        embedding_dim: d.
        num_layers: L.
        fusion: ``sum`` | ``concat`` | ``gate``.
    """

    def __init__(self, num_users: int, num_items: int, text_embeddings: Tensor | np.ndarray,
                 embedding_dim: int = 64, num_layers: int = 3, fusion: str = "sum") -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        text = torch.as_tensor(np.asarray(text_embeddings), dtype=torch.float32)
        if text.dim() != 2 or text.shape[0] != num_items:
            raise ValueError(f"text_embeddings must be ({num_items}, T), got {tuple(text.shape)}")
        nn.Module.__init__(self)
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers, self.fusion = embedding_dim, num_layers, fusion
        if num_users <= 0 or num_items <= 0 or num_layers < 0:
            raise ValueError("num_users and num_items must be positive and num_layers >= 0")
        self.register_buffer("text", nn.functional.normalize(text, dim=-1))
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        self.text_proj = nn.Linear(text.shape[1], embedding_dim, bias=False)
        self.mix = nn.Linear(2 * embedding_dim, embedding_dim) if fusion in ("concat", "gate") else None
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.1²) id embeddings; small projection weights so text starts at id-embedding scale."""
        super().reset_parameters()
        if hasattr(self, "text_proj"):
            nn.init.normal_(self.text_proj.weight, std=0.1 / max(1.0, self.text.shape[1] ** 0.5))
            if self.mix is not None:
                self.mix.reset_parameters()

    def ego_embeddings(self) -> Tensor:
        """(U+I, d): user id embeddings stacked on fused item embeddings."""
        w = self.embedding.weight
        users, ids = w[: self.num_users], w[self.num_users:]
        proj = self.text_proj(self.text)  # (I, d)
        if self.fusion == "sum":
            items = ids + proj
        elif self.fusion == "concat":
            items = self.mix(torch.cat([ids, proj], -1))
        else:
            g = torch.sigmoid(self.mix(torch.cat([ids, proj], -1)))
            items = g * ids + (1 - g) * proj
        return torch.cat([users, items], 0)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
                f"dim={self.embedding_dim}, layers={self.num_layers}, text={self.text.shape[1]}, "
                f"fusion={self.fusion})")
