"""Fusion of learned id embeddings with projected text embeddings (shared by the text-aware models)."""
from __future__ import annotations

import logging

import numpy as np
import torch
from torch import Tensor, nn

logger = logging.getLogger(__name__)

FUSIONS = ("sum", "concat", "gate", "text")


def as_text_buffer(text: Tensor | np.ndarray, rows: int, name: str = "text_embeddings") -> Tensor:
    """Row-L2-normalised float32 copy of ``text`` after checking it has ``rows`` rows.

    Raises:
        ValueError: ``text`` is not a matrix with ``rows`` rows.
    """
    t = text.detach().to("cpu", torch.float32) if isinstance(text, Tensor) else torch.as_tensor(np.asarray(text), dtype=torch.float32)
    if t.dim() != 2 or t.shape[0] != rows:
        raise ValueError(f"{name} must be ({rows}, T), got {tuple(t.shape)}")
    return nn.functional.normalize(t, dim=-1)


class TextFusion(nn.Module):
    r"""Combine id embeddings :math:`e` (n, d) with text vectors :math:`t` (n, T).

    With the projection :math:`p = W_t t` (T -> d, no bias):

    - ``sum``:    :math:`e + p`
    - ``concat``: :math:`W_c [e \| p]`
    - ``gate``:   :math:`g \odot e + (1 - g) \odot p`, :math:`g = \sigma(W_g [e \| p])`
    - ``text``:   :math:`p` (no id embedding: the text-only ablation)

    Args:
        text_dim: T.
        embedding_dim: d.
        fusion: one of :data:`FUSIONS`.

    Raises:
        ValueError: unknown ``fusion``.
    """

    def __init__(self, text_dim: int, embedding_dim: int, fusion: str = "sum") -> None:
        super().__init__()
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        self.text_dim, self.embedding_dim, self.fusion = text_dim, embedding_dim, fusion
        self.proj = nn.Linear(text_dim, embedding_dim, bias=False)
        self.mix = nn.Linear(2 * embedding_dim, embedding_dim) if fusion in ("concat", "gate") else None
        self.reset_parameters()

    @property
    def uses_ids(self) -> bool:
        """Whether :meth:`forward` reads id embeddings (False for ``text``)."""
        return self.fusion != "text"

    def reset_parameters(self) -> None:
        """Small projection weights (std 0.1/sqrt(T)); PyTorch's default for the mixing layer."""
        nn.init.normal_(self.proj.weight, std=0.1 / max(1.0, self.text_dim ** 0.5))
        if self.mix is not None:
            self.mix.reset_parameters()

    def forward(self, ids: Tensor | None, text: Tensor) -> Tensor:
        """Fused (n, d) embeddings from (n, d) ``ids`` (``None`` only for ``text``) and (n, T) ``text``.

        Raises:
            ValueError: ``ids`` missing for a fusion that needs them.
        """
        proj = self.proj(text)
        if self.fusion == "text":
            return proj
        if ids is None:
            raise ValueError(f"fusion {self.fusion!r} needs id embeddings")
        if self.fusion == "sum":
            return ids + proj
        both = torch.cat([ids, proj], -1)
        if self.fusion == "concat":
            return self.mix(both)
        g = torch.sigmoid(self.mix(both))
        return g * ids + (1 - g) * proj

    def extra_repr(self) -> str:
        return f"text={self.text_dim}, dim={self.embedding_dim}, fusion={self.fusion}"


def id_penalty(ids: Tensor | None, pos_item: Tensor, neg_item: Tensor, batch: int) -> Tensor:
    r""":math:`\frac{1}{2B}(\|e_p\|^2 + \|e_n\|^2)` over the batch items' id embeddings ``ids`` (I, d).

    Raises:
        ValueError: ``ids`` is None (``fusion="text"`` allocates no item ids).
    """
    if ids is None:
        raise ValueError("an L2 on the item ids needs item id embeddings; fusion 'text' has none")
    return 0.5 * (ids[pos_item].pow(2).sum() + ids[neg_item].pow(2).sum()) / batch
