"""R-GCN recommender over the snapshot's typed graph (users, items, queries, entities)."""
from __future__ import annotations

import logging
from typing import Mapping, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .base import EmbeddingRecommender
from .relconv import shifted_edges

logger = logging.getLogger(__name__)

NODE_ORDER = ("user", "item", "query", "entity")


class RGCNRec(EmbeddingRecommender):
    r"""Relational GCN (Schlichtkrull et al., 2018) scoring users against items.

    All node types share one index space (users, items, queries, entities, in that order). Each
    layer is PyG's ``RGCNConv``

    .. math::
        x_v^{(l+1)} = W_0 x_v^{(l)} + \sum_{r} \frac{1}{|N_r(v)|} \sum_{w \in N_r(v)} W_r x_w^{(l)},

    with ReLU between layers; the output is the mean of all layers (ego included), and
    score(u, i) = :math:`h_u^\top h_i`.

    Caveat: with ``pyg-lib`` installed (kgrec does not require it) and neither ``num_bases`` nor
    ``num_blocks`` set, PyG's ``RGCNConv`` takes its segment-matmul path, whose mean runs over all
    of a node's in-edges rather than per relation (a TODO in PyG 2.8); results then differ slightly
    from a machine without it. ``KGFusedRec`` uses kgrec's own ``RelationalConv`` and is unaffected.

    Args:
        num_nodes: node count per type, e.g. ``{"user": U, "item": I, "query": Q, "entity": E}``.
        num_relations: number of edge types (including reverses).
        embedding_dim: d.
        num_layers: L.
        num_bases: basis decomposition size (``None``: full weights); exclusive with ``num_blocks``.
        num_blocks: block-diagonal decomposition; exclusive with ``num_bases``.
    """

    def __init__(self, num_nodes: Mapping[str, int], num_relations: int, embedding_dim: int = 64,
                 num_layers: int = 2, num_bases: int | None = None, num_blocks: int | None = None) -> None:
        super().__init__()
        from torch_geometric.nn import RGCNConv

        if num_bases is not None and num_blocks is not None:
            raise ValueError("num_bases and num_blocks cannot both be set")
        if num_nodes.get("user", 0) <= 0 or num_nodes.get("item", 0) <= 0:
            raise ValueError("need at least one user and one item")
        self.offsets: dict[str, int] = {}
        total = 0
        for t in NODE_ORDER:
            self.offsets[t] = total
            total += int(num_nodes.get(t, 0))
        self.num_users, self.num_items = int(num_nodes["user"]), int(num_nodes["item"])
        self.num_total, self.num_relations = total, num_relations
        self.embedding_dim, self.num_layers = embedding_dim, num_layers
        self.embedding = nn.Embedding(total, embedding_dim)
        self.convs = nn.ModuleList(RGCNConv(embedding_dim, embedding_dim, num_relations, num_bases=num_bases,
                                            num_blocks=num_blocks) for _ in range(num_layers))
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.1²) embeddings; PyG's initialisation for the convolutions."""
        nn.init.normal_(self.embedding.weight, std=0.1)
        for conv in self.convs:
            conv.reset_parameters()

    @staticmethod
    def build_graph(user: np.ndarray, item: np.ndarray, num_nodes: Mapping[str, int],
                    relations: Mapping[str, np.ndarray], relation_types: Mapping[str, Sequence[str]],
                    device: torch.device | str = "cpu") -> tuple[Tensor, Tensor]:
        """Homogeneous typed edge list with reverse edges.

        Edge type 0 is user->item interaction, 1 its reverse; relation ``k`` (sorted by name) gets
        types ``2 + 2k`` (forward) and ``3 + 2k`` (reverse).

        Returns:
            ``(edge_index (2, E) long, edge_type (E,) long)``.
        """
        off, total = {}, 0
        for t in NODE_ORDER:
            off[t] = total
            total += int(num_nodes.get(t, 0))
        srcs, dsts, types = [], [], []

        def add(s: np.ndarray, d: np.ndarray, t: int) -> None:
            srcs.extend([s, d])
            dsts.extend([d, s])
            types.extend([np.full(len(s), t), np.full(len(s), t + 1)])

        add(*shifted_edges("interactions", np.stack([np.asarray(user, np.int64), np.asarray(item, np.int64)]),
                           "user", "item", num_nodes, off), 0)
        for k, name in enumerate(sorted(relations)):
            src_t, dst_t = relation_types[name]
            add(*shifted_edges(name, relations[name], src_t, dst_t, num_nodes, off), 2 + 2 * k)
        ei = torch.from_numpy(np.stack([np.concatenate(srcs), np.concatenate(dsts)]))
        et = torch.from_numpy(np.concatenate(types).astype(np.int64))
        return ei.to(device), et.to(device)

    @staticmethod
    def count_relations(relations: Mapping[str, np.ndarray]) -> int:
        """Edge types produced by :meth:`build_graph`."""
        return 2 + 2 * len(relations)

    def ego_embeddings(self) -> Tensor:
        """(N, d) layer-0 embeddings of all nodes."""
        return self.embedding.weight

    def _propagate(self, x: Tensor, edge_index: Tensor, edge_type: Tensor, num_out: int,
                   num_sampled_nodes: Sequence[int] | None = None,
                   num_sampled_edges: Sequence[int] | None = None) -> Tensor:
        """Layer-mean output of the first ``num_out`` rows of ``x`` after all convolutions.

        With per-hop counts (a neighbour-sampled subgraph whose nodes and edges are in hop order),
        layer ``l`` runs only on the nodes within ``L - l`` hops of the seeds (PyG ``trim_to_layer``).
        """
        out = x[:num_out]
        for l, conv in enumerate(self.convs):
            if num_sampled_nodes is not None and num_sampled_edges is not None:
                from torch_geometric.utils import trim_to_layer
                x, edge_index, edge_type = trim_to_layer(l, list(num_sampled_nodes), list(num_sampled_edges),
                                                         x, edge_index, edge_type)
            x = conv(x, edge_index, edge_type)
            if l < self.num_layers - 1:
                x = torch.relu(x)
            out = out + x[:num_out]
        return out / (self.num_layers + 1)

    def get_embedding(self, graph: tuple[Tensor, Tensor]) -> tuple[Tensor, Tensor]:
        """``graph = (edge_index, edge_type)`` -> ``(user (U, d), item (I, d))`` layer-mean outputs."""
        edge_index, edge_type = graph
        out = self._propagate(self.ego_embeddings(), edge_index, edge_type, self.num_total)
        u0, i0 = self.offsets["user"], self.offsets["item"]
        return out[u0:u0 + self.num_users], out[i0:i0 + self.num_items]

    def embed_subgraph(self, n_id: Tensor, edge_index: Tensor, edge_type: Tensor, num_seeds: int,
                       num_sampled_nodes: Sequence[int] | None = None,
                       num_sampled_edges: Sequence[int] | None = None) -> Tensor:
        """Layer-mean outputs of the seed nodes of a sampled subgraph (as PyG's ``NeighborLoader`` yields it).

        Args:
            n_id: (n,) global node ids of the subgraph, the ``num_seeds`` seeds first.
            edge_index: (2, e) local indices into ``n_id`` (source, target).
            edge_type: (e,) relation of each edge.
            num_seeds: number of seed nodes.
            num_sampled_nodes, num_sampled_edges: optional per-hop counts (hop 0 = seeds) for trimming.

        Returns:
            (num_seeds, d); exact when every neighbour within L hops was sampled.
        """
        return self._propagate(self.embedding(n_id), edge_index, edge_type, num_seeds,
                               num_sampled_nodes, num_sampled_edges)

    def subgraph_loss(self, n_id: Tensor, edge_index: Tensor, edge_type: Tensor, num_seeds: int, user: Tensor,
                      pos_item: Tensor, neg_item: Tensor, reg_weight: float = 1e-4,
                      num_sampled_nodes: Sequence[int] | None = None,
                      num_sampled_edges: Sequence[int] | None = None) -> Tensor:
        r""":meth:`loss` on a sampled subgraph; ``user``, ``pos_item``, ``neg_item`` are (B,) positions of the
        triples' nodes among the seeds (``< num_seeds``). Same BPR + :math:`\frac{\lambda}{2B}` L2 on ego embeddings."""
        h = self.embed_subgraph(n_id, edge_index, edge_type, num_seeds, num_sampled_nodes, num_sampled_edges)
        u = h[user]
        bpr = nn.functional.softplus((u * h[neg_item]).sum(-1) - (u * h[pos_item]).sum(-1)).mean()
        w = self.embedding(n_id[:num_seeds])
        ego = w[user].pow(2).sum() + w[pos_item].pow(2).sum() + w[neg_item].pow(2).sum()
        return bpr + reg_weight * 0.5 * ego / user.numel()

    @torch.no_grad()
    def layerwise_embedding(self, colptr: Tensor, row: Tensor, edge_type: Tensor,
                            max_edges: int = 2 ** 19) -> tuple[Tensor, Tensor]:
        """:meth:`get_embedding` computed one layer at a time over chunks of target nodes (exact, no sampling).

        The graph is given in CSC form and may stay on the CPU while the model is on an accelerator; each
        chunk's in-edges are moved to the model's device. Memory: three (N, d) tensors (current layer,
        next layer, running mean) plus one chunk's messages (about ``max_edges`` x d; a node with more
        in-edges forms a chunk of its own).

        Args:
            colptr: (N + 1,) CSC pointers: the in-edges of node v are positions ``colptr[v]:colptr[v + 1]``.
            row: (E,) source node of each CSC position.
            edge_type: (E,) relation of each CSC position.
            max_edges: in-edges per chunk.

        Returns:
            ``(user (U, d), item (I, d))``.
        """
        dev = self.embedding.weight.device
        colptr, row, edge_type = colptr.cpu(), row.cpu(), edge_type.cpu()
        n, e = colptr.numel() - 1, int(colptr[-1])
        if n != self.num_total:
            raise ValueError(f"graph has {n} nodes, the model {self.num_total}")
        marks = torch.arange(1, max(e - 1, 0) // max_edges + 1) * max_edges  # chunk edge budgets
        cuts = torch.searchsorted(colptr, marks, right=True) - 1
        # a node across a budget mark is a chunk of its own (cuts + 1 ends it): the others keep to max_edges
        bounds = torch.unique(torch.cat([torch.tensor([0, n]), cuts.clamp(0, n), (cuts + 1).clamp(0, n)])).tolist()
        deg = colptr.diff()
        x = self.ego_embeddings()
        out = x.detach().clone()
        for l, conv in enumerate(self.convs):
            nxt = torch.empty_like(out)
            for a, b in zip(bounds[:-1], bounds[1:]):
                e0, e1 = int(colptr[a]), int(colptr[b])
                dst = torch.repeat_interleave(torch.arange(b - a), deg[a:b])
                ei = torch.stack([row[e0:e1], dst]).to(dev)
                nxt[a:b] = conv((x, x[a:b]), ei, edge_type[e0:e1].to(dev))
            x = torch.relu(nxt) if l < self.num_layers - 1 else nxt
            out += x
        out /= self.num_layers + 1
        u0, i0 = self.offsets["user"], self.offsets["item"]
        return out[u0:u0 + self.num_users], out[i0:i0 + self.num_items]

    def loss(self, graph: tuple[Tensor, Tensor], user: Tensor, pos_item: Tensor, neg_item: Tensor,
             reg_weight: float = 1e-4) -> Tensor:
        r"""BPR loss + :math:`\frac{\lambda}{2B}` L2 on the batch's ego embeddings (as LightGCN)."""
        ue, ie = self.get_embedding(graph)
        u = ue[user]
        bpr = nn.functional.softplus((u * ie[neg_item]).sum(-1) - (u * ie[pos_item]).sum(-1)).mean()
        w = self.ego_embeddings()
        i0 = self.offsets["item"]
        ego = w[user].pow(2).sum() + w[pos_item + i0].pow(2).sum() + w[neg_item + i0].pow(2).sum()
        return bpr + reg_weight * 0.5 * ego / user.numel()

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(nodes={self.num_total}, users={self.num_users}, "
                f"items={self.num_items}, relations={self.num_relations}, dim={self.embedding_dim}, "
                f"layers={self.num_layers})")
