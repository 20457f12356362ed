"""LightGCN whose item ego embeddings fuse id embeddings with projected text embeddings."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

from .fusion import FUSIONS, TextFusion, as_text_buffer, id_penalty
from .lightgcn import LightGCN

logger = logging.getLogger(__name__)

__all__ = ["FUSIONS", "FusedLightGCN"]


class FusedLightGCN(LightGCN):
    r"""LightGCN with text-aware item embeddings.

    With item id embeddings :math:`e_i`, item text vectors :math:`t_i \in \mathbb{R}^{T}` and
    :math:`p_i = W_t t_i` (a linear projection to d), the item ego embedding is
    :class:`~gnn.models.fusion.TextFusion`'s

    - ``sum``:    :math:`e_i + p_i`
    - ``concat``: :math:`W_c [e_i \| p_i]`
    - ``gate``:   :math:`g \odot e_i + (1 - g) \odot p_i`, :math:`g = \sigma(W_g [e_i \| p_i])`
    - ``text``:   :math:`p_i` (text only: no item id embeddings are allocated)

    User ego embeddings are id embeddings; propagation, scoring and loss are LightGCN's.

    Args:
        num_users: U.
        num_items: I.
        text_embeddings: (I, T) item text vectors (kept, L2-normalised, as a fixed buffer).
        embedding_dim: d.
        num_layers: L.
        fusion: ``sum`` | ``concat`` | ``gate`` | ``text``.
    """

    def __init__(self, num_users: int, num_items: int, text_embeddings: Tensor | np.ndarray,
                 embedding_dim: int = 64, num_layers: int = 3, fusion: str = "sum") -> None:
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        text = as_text_buffer(text_embeddings, num_items)
        nn.Module.__init__(self)
        self.num_users, self.num_items = num_users, num_items
        self.embedding_dim, self.num_layers, self.fusion = embedding_dim, num_layers, fusion
        if num_users <= 0 or num_items <= 0 or num_layers < 0:
            raise ValueError("num_users and num_items must be positive and num_layers >= 0")
        self.register_buffer("text", text, persistent=False)  # a constant of the snapshot: no checkpoint copies
        self.fuse = TextFusion(text.shape[1], embedding_dim, fusion)
        rows = num_users + (num_items if self.fuse.uses_ids else 0)
        self.embedding = nn.Embedding(rows, embedding_dim)
        self.reset_parameters()

    @property
    def text_proj(self) -> nn.Linear:
        """The text projection :math:`W_t` (T -> d)."""
        return self.fuse.proj

    def reset_parameters(self) -> None:
        """N(0, 0.1²) id embeddings; small projection weights (see :class:`TextFusion`)."""
        super().reset_parameters()
        if hasattr(self, "fuse"):
            self.fuse.reset_parameters()

    def item_id_embeddings(self) -> Tensor | None:
        """(I, d) item id embeddings, the part of each item beside its text; None with fusion "text"."""
        return self.embedding.weight[self.num_users:] if self.fuse.uses_ids else None

    def ego_embeddings(self) -> Tensor:
        """(U+I, d): user id embeddings stacked on fused item embeddings."""
        users = self.embedding.weight[: self.num_users]
        return torch.cat([users, self.fuse(self.item_id_embeddings(), self.text)], 0)

    def loss(self, adj: Tensor, user: Tensor, pos_item: Tensor, neg_item: Tensor,
             reg_weight: float = 1e-4, id_reg_weight: float = 0.0) -> Tensor:
        r"""LightGCN's BPR + L2 loss, plus :math:`\mu\frac{1}{2B}(\|e_p\|^2 + \|e_n\|^2)` on the batch
        items' id embeddings (``id_reg_weight`` = μ; see ``TrainConfig.id_weight_decay``).

        Raises:
            ValueError: μ > 0 with ``fusion="text"``, which has no item ids.
        """
        loss = super().loss(adj, user, pos_item, neg_item, reg_weight)
        if not id_reg_weight:
            return loss
        return loss + id_reg_weight * id_penalty(self.item_id_embeddings(), pos_item, neg_item, user.numel())

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
                f"dim={self.embedding_dim}, layers={self.num_layers}, text={self.text.shape[1]}, "
                f"fusion={self.fusion})")
