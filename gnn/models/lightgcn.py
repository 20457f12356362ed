"""LightGCN (He et al., SIGIR 2020) with a prebuilt normalised adjacency and ``torch.sparse.mm``."""
from __future__ import annotations

import logging
import warnings

import numpy as np
import torch
from torch import Tensor, nn

from .base import EmbeddingRecommender

logger = logging.getLogger(__name__)


class _SymmetricSpMM(torch.autograd.Function):
    """``A @ X`` for a symmetric sparse ``A``: the backward is ``A @ G`` (no transpose needed).

    Both products run in ``A``'s dtype with autocast off: autocast would cast ``A`` to bf16/fp16,
    which CPU CSR kernels lack, and the backward (outside autocast) would then mix dtypes.
    """

    @staticmethod
    def forward(ctx, adj: Tensor, x: Tensor) -> Tensor:  # type: ignore[override]
        ctx.adj, ctx.x_dtype = adj, x.dtype
        with torch.autocast(device_type=x.device.type, enabled=False):
            return torch.sparse.mm(adj, x.to(adj.dtype))

    @staticmethod
    def backward(ctx, grad: Tensor) -> tuple[None, Tensor]:  # type: ignore[override]
        with torch.autocast(device_type=grad.device.type, enabled=False):
            return None, torch.sparse.mm(ctx.adj, grad.to(ctx.adj.dtype)).to(ctx.x_dtype)


class LightGCN(EmbeddingRecommender):
    r"""LightGCN over the user-item bipartite graph.

    Nodes are users ``0..U-1`` followed by items ``U..U+I-1``. With ego embeddings
    :math:`E^{(0)} \in \mathbb{R}^{(U+I) \times d}` and :math:`\hat A = D^{-1/2} A D^{-1/2}`,

    .. math::
        E^{(l+1)} = \hat A E^{(l)}, \qquad E = \frac{1}{L+1} \sum_{l=0}^{L} E^{(l)},

    and the score of (u, i) is :math:`e_u^\top e_i`.

    Args:
        num_users: U.
        num_items: I.
        embedding_dim: d.
        num_layers: L (>= 0).
    """

    def __init__(self, num_users: int, num_items: int, embedding_dim: int = 64, num_layers: int = 3) -> None:
        super().__init__()
        if num_users <= 0 or num_items <= 0:
            raise ValueError("num_users and num_items must be positive")
        if num_layers < 0:
            raise ValueError("num_layers must be >= 0")
        self.num_users = num_users
        self.num_items = num_items
        self.embedding_dim = embedding_dim
        self.num_layers = num_layers
        self.embedding = nn.Embedding(num_users + num_items, embedding_dim)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """Initialise embeddings with N(0, 0.1²) (the LightGCN reference code)."""
        nn.init.normal_(self.embedding.weight, std=0.1)

    @staticmethod
    def build_adjacency(user: np.ndarray, item: np.ndarray, num_users: int, num_items: int,
                        device: torch.device | str = "cpu", extra_edges: np.ndarray | None = None) -> Tensor:
        r"""Symmetric-normalised adjacency :math:`\hat A = D^{-1/2} A D^{-1/2}` from pair arrays.

        Args:
            user: (E,) user indices of the training interactions.
            item: (E,) item indices (duplicates are collapsed).
            num_users: U.
            num_items: I.
            device: where the tensor lives.
            extra_edges: optional (2, F) edges between nodes of the joint index space (users
                ``0..U-1``, items ``U..U+I-1``), e.g. user-user friendships: they join :math:`A` in
                both directions (duplicates collapsed, self-loops dropped) before normalisation, so
                propagation also runs along them (SocialLGN-style, Liao et al. 2022).

        Returns:
            Sparse (U+I, U+I) float32 CSR tensor (symmetric; :meth:`get_embedding` relies on it), with
            int32 indices when they fit: the CPU (MKL) product converts int64 indices on every call.
        """
        n = num_users + num_items
        user, item = np.asarray(user, dtype=np.int64), np.asarray(item, dtype=np.int64)
        for name, x, size in (("user", user, num_users), ("item", item, num_items)):
            if x.size and (x.min() < 0 or x.max() >= size):  # the joint key would wrap onto another pair
                raise ValueError(f"{name} index outside 0..{size - 1}")
        key = np.unique(user * num_items + item)
        u, i = key // num_items, key % num_items + num_users
        row = np.concatenate([u, i])
        col = np.concatenate([i, u])
        if extra_edges is not None and np.asarray(extra_edges).size:
            e = np.asarray(extra_edges, dtype=np.int64).reshape(2, -1)
            if e.min() < 0 or e.max() >= n:
                raise ValueError(f"extra_edges index outside 0..{n - 1}")
            e = e[:, e[0] != e[1]]
            key = np.unique(np.concatenate([row * n + col, e[0] * n + e[1], e[1] * n + e[0]]))
            row, col = key // n, key % n
        deg = np.bincount(row, minlength=n).astype(np.float64)
        dinv = np.zeros_like(deg)
        np.power(deg, -0.5, out=dinv, where=deg > 0)
        val = (dinv[row] * dinv[col]).astype(np.float32)
        idx = torch.from_numpy(np.stack([row, col]))
        adj = torch.sparse_coo_tensor(idx, torch.from_numpy(val), (n, n), check_invariants=False).coalesce()
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Sparse CSR tensor support is in beta")
            csr = adj.to_sparse_csr()
            if max(n, len(row)) < 2 ** 31:
                csr = torch.sparse_csr_tensor(csr.crow_indices().int(), csr.col_indices().int(), csr.values(),
                                              csr.shape, check_invariants=False)
            return csr.to(device)

    def ego_embeddings(self) -> Tensor:
        """(U+I, d) layer-0 embeddings (subclasses fuse side information here)."""
        return self.embedding.weight

    def get_embedding(self, adj: Tensor) -> tuple[Tensor, Tensor]:
        """Propagated embeddings.

        Args:
            adj: sparse (U+I, U+I) normalised adjacency from :meth:`build_adjacency`.

        Returns:
            ``(user (U, d), item (I, d))`` layer-mean embeddings.
        """
        x = self.ego_embeddings()
        out = x
        for _ in range(self.num_layers):
            x = _SymmetricSpMM.apply(adj, x)
            out = out + x
        out = out / (self.num_layers + 1)
        return out[: self.num_users], out[self.num_users:]

    def loss(self, adj: Tensor, user: Tensor, pos_item: Tensor, neg_item: Tensor,
             reg_weight: float = 1e-4) -> Tensor:
        r"""BPR loss with L2 on the batch's ego embeddings.

        .. math::
            \mathcal{L} = -\frac{1}{B}\sum \ln\sigma(e_u^\top e_p - e_u^\top e_n)
                + \lambda \frac{1}{2B} (\|e^{(0)}_u\|^2 + \|e^{(0)}_p\|^2 + \|e^{(0)}_n\|^2)

        Args:
            adj: normalised adjacency.
            user, pos_item, neg_item: (B,) indices.
            reg_weight: λ.

        Returns:
            Scalar loss.
        """
        ue, ie = self.get_embedding(adj)
        u, p, n = ue[user], ie[pos_item], ie[neg_item]
        pos = (u * p).sum(-1)
        neg = (u * n).sum(-1)
        bpr = nn.functional.softplus(neg - pos).mean()
        w = self.ego_embeddings()
        ego = (w[user].pow(2).sum() + w[pos_item + self.num_users].pow(2).sum()
               + w[neg_item + self.num_users].pow(2).sum())
        return bpr + reg_weight * 0.5 * ego / user.numel()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(users={self.num_users}, items={self.num_items}, "
                f"dim={self.embedding_dim}, layers={self.num_layers})")
