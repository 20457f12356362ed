"""Text-fused ego embeddings, LightGCN on interactions plus R-GCN over the knowledge graph."""
from __future__ import annotations

import logging
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch
from torch import Tensor, nn

from .base import EmbeddingRecommender
from .fusion import FUSIONS, TextFusion, as_text_buffer, id_penalty
from .lightgcn import LightGCN, _SymmetricSpMM
from .relconv import RelationalConv, shifted_edges, sort_by_type

logger = logging.getLogger(__name__)

NODE_ORDER = ("user", "item", "query", "entity")
TEXT_TYPES = ("item", "query", "entity")


class KGGraph(NamedTuple):
    """What :meth:`KGFusedRec.get_embedding` propagates over."""

    adj: Tensor  # (U+I, U+I) normalised user-item adjacency (LightGCN)
    edge_index: Tensor  # (2, E) typed KG edges in the shared node index space (R-GCN), sorted by type
    edge_type: Tensor  # (E,)
    type_ptr: Tensor  # (R+1,): edges of type r are type_ptr[r]:type_ptr[r+1]
    norm: Tensor  # (E,) 1/|N_r(v)| of each edge (mean aggregation per relation)


class KGFusedRec(EmbeddingRecommender):
    r"""Fused text + id ego embeddings, LightGCN on interactions, R-GCN on the knowledge graph.

    Users, items, queries and entities share one index space (in that order). The ego embedding
    of a node of type :math:`\tau \in \{item, query, entity\}` with text vector :math:`t_v` is
    :class:`~gnn.models.fusion.TextFusion`'s :math:`h_v = \mathrm{fuse}_\tau(e_v, W_\tau t_v)`
    (``text`` fusion: :math:`W_\tau t_v` only); users, and types given no text, use their id
    embedding :math:`e_v`. Then

    .. math::
        Z = \frac{1}{L+1} \sum_{l=0}^{L} \hat A^{l} H_{UI}, \qquad
        r^{(k+1)} = \mathrm{RGCN}_k(r^{(k)}), \; r^{(0)} = H, \qquad
        R = \frac{1}{K} \sum_{k=1}^{K} r^{(k)},

    where :math:`\hat A` is LightGCN's normalised user-item adjacency and each
    :math:`\mathrm{RGCN}_k` is PyG's ``RGCNConv`` without self-loop weight or bias,
    :math:`r_v^{(k+1)} = \sum_{r} \frac{1}{|N_r(v)|} \sum_{w \in N_r(v)} W_r^{(k)} r_w^{(k)}`, over the
    snapshot's typed relations (item-entity, entity-entity triples, query-item, user-query,
    user-user friends, each with its reverse; ReLU between layers; computed by
    :class:`~gnn.models.relconv.RelationalConv`, the same function as PyG's ``RGCNConv`` with one
    matrix product per relation over that relation's edges only): a node's own ego reaches the
    output through LightGCN only, and a node without KG edges gets :math:`R_v = 0`. Final
    embeddings are :math:`e_u = z_u + a_{user} R_u`, :math:`e_i = z_i + a_{item} R_i`, with learned scalar
    gates :math:`a` that start at 0 (ReZero-style: training starts from the fused LightGCN and
    lets the data decide how much of the KG signal to add). By default (``kg_users=False``) the user
    gate stays 0: users get no KG term (their friends and attributes still reach items through the
    graph), because user-side messages hurt on both ml-100k and lastfm (docs/results.md);
    score(u, i) = :math:`e_u^\top e_i`.

    Args:
        num_nodes: node count per type, e.g. ``{"user": U, "item": I, "query": Q, "entity": E}``.
        num_relations: edge types of the KG graph (see :meth:`count_relations`).
        text_embeddings: optional ``{"item": (I, T), "query": (Q, T), "entity": (E, T)}``; a type
            left out (or ``None`` altogether) uses id embeddings only.
        embedding_dim: d.
        num_layers: L, LightGCN layers.
        kg_layers: K, R-GCN layers (0: no KG branch, the model is a fused LightGCN).
        fusion: ``sum`` | ``concat`` | ``gate`` | ``text`` (``text`` needs item text).
        num_bases: R-GCN basis decomposition size (``None``: one full weight per relation).
        kg_users: whether users get the KG term too (default ``False``: items only).

    Raises:
        ValueError: no users or items, bad layer counts, unknown fusion, text of the wrong shape.
    """

    def __init__(self, num_nodes: Mapping[str, int], num_relations: int,
                 text_embeddings: Mapping[str, Tensor | np.ndarray] | None = None, embedding_dim: int = 64,
                 num_layers: int = 3, kg_layers: int = 2, fusion: str = "sum", num_bases: int | None = None,
                 kg_users: bool = False) -> None:
        super().__init__()
        if num_nodes.get("user", 0) <= 0 or num_nodes.get("item", 0) <= 0:
            raise ValueError("need at least one user and one item")
        if num_layers < 0 or kg_layers < 0:
            raise ValueError("num_layers and kg_layers must be >= 0")
        if fusion not in FUSIONS:
            raise ValueError(f"unknown fusion {fusion!r}; choose from {FUSIONS}")
        text_embeddings = {k: v for k, v in (text_embeddings or {}).items() if v is not None}
        if fusion == "text" and "item" not in text_embeddings:
            raise ValueError("fusion 'text' needs item text embeddings")
        self.counts = {t: int(num_nodes.get(t, 0)) for t in NODE_ORDER}
        self.offsets: dict[str, int] = {}
        total = 0
        for t in NODE_ORDER:
            self.offsets[t] = total
            total += self.counts[t]
        self.num_users, self.num_items, self.num_total = self.counts["user"], self.counts["item"], total
        self.num_relations = max(1, int(num_relations))
        self.embedding_dim, self.num_layers, self.kg_layers, self.fusion = embedding_dim, num_layers, kg_layers, fusion
        self.text_types = tuple(t for t in TEXT_TYPES if t in text_embeddings and self.counts[t] > 0)
        for t in self.text_types:
            self.register_buffer(f"text_{t}", as_text_buffer(text_embeddings[t], self.counts[t], f"{t} text"),
                                 persistent=False)  # a constant of the snapshot: no checkpoint copies
        self.fuse = nn.ModuleDict({t: TextFusion(getattr(self, f"text_{t}").shape[1], embedding_dim, fusion)
                                   for t in self.text_types})
        self.embedding = nn.ModuleDict({
            t: nn.Embedding(self.counts[t], embedding_dim) for t in NODE_ORDER
            if self.counts[t] > 0 and (t not in self.text_types or self.fuse[t].uses_ids)})
        # no self-loop weight and no bias: the node's own ego is LightGCN's; the KG branch adds only
        # what arrives over typed edges (0 for a node without KG edges)
        self.convs = nn.ModuleList(RelationalConv(embedding_dim, embedding_dim, self.num_relations, num_bases)
                                   for _ in range(kg_layers))
        self.kg_gate = nn.Parameter(torch.zeros(2))  # (user, item) weight of the KG branch
        self.kg_users = kg_users
        self.register_buffer("kg_gate_mask", torch.tensor([float(kg_users), 1.0]), persistent=False)
        self.reset_parameters()

    def reset_parameters(self) -> None:
        """N(0, 0.1²) id embeddings, small text projections, PyG's initialisation for R-GCN."""
        for emb in self.embedding.values():
            nn.init.normal_(emb.weight, std=0.1)
        for f in self.fuse.values():
            f.reset_parameters()
        for conv in self.convs:
            conv.reset_parameters()
        if hasattr(self, "kg_gate"):
            nn.init.zeros_(self.kg_gate)

    @staticmethod
    def count_relations(relations: Mapping[str, np.ndarray]) -> int:
        """Edge types produced by :meth:`build_graph` (a forward and a reverse type per relation)."""
        return 2 * len(relations)

    @staticmethod
    def build_graph(user: np.ndarray, item: np.ndarray, num_nodes: Mapping[str, int],
                    relations: Mapping[str, np.ndarray], relation_types: Mapping[str, Sequence[str]],
                    device: torch.device | str = "cpu", extra_edges: np.ndarray | None = None) -> KGGraph:
        """LightGCN adjacency of the training pairs plus the typed KG edge list.

        Relation ``k`` (sorted by name) gets edge types ``2k`` (source -> target) and ``2k + 1``
        (reverse); node indices are shifted by their type's offset in :data:`NODE_ORDER`.

        Args:
            user, item: (P,) training interactions.
            num_nodes: node count per type.
            relations: relation name -> (2, E) source/target rows.
            relation_types: relation name -> (source type, target type).
            device: where the tensors live.
            extra_edges: optional user/item edges that join the LightGCN adjacency too (see
                :meth:`LightGCN.build_adjacency`).
        """
        off, total = {}, 0
        for t in NODE_ORDER:
            off[t] = total
            total += int(num_nodes.get(t, 0))
        adj = LightGCN.build_adjacency(user, item, int(num_nodes["user"]), int(num_nodes["item"]), device=device,
                                       extra_edges=extra_edges)
        srcs, dsts, types = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
        for k, name in enumerate(sorted(relations)):
            src_t, dst_t = relation_types[name]
            s, d = shifted_edges(name, relations[name], src_t, dst_t, num_nodes, off)
            srcs += [s, d]
            dsts += [d, s]
            types += [np.full(len(s), 2 * k), np.full(len(s), 2 * k + 1)]
        ei = torch.from_numpy(np.stack([np.concatenate(srcs), np.concatenate(dsts)]))
        et = torch.from_numpy(np.concatenate(types).astype(np.int64))
        ei, et, ptr, norm = sort_by_type(ei, et, max(1, 2 * len(relations)))
        return KGGraph(adj, ei.to(device), et.to(device), ptr, norm.to(device))

    def id_embeddings(self, node_type: str) -> Tensor | None:
        """(n, d) id embeddings of one node type; None for a text type with fusion "text"."""
        return self.embedding[node_type].weight if node_type in self.embedding else None

    def type_ego(self, node_type: str) -> Tensor:
        """(n, d) ego embeddings of one node type."""
        ids = self.id_embeddings(node_type)
        if node_type in self.text_types:
            return self.fuse[node_type](ids, getattr(self, f"text_{node_type}"))
        if ids is None:
            raise ValueError(f"no {node_type} nodes")
        return ids

    def ego_embeddings(self) -> Tensor:
        """(N, d) layer-0 embeddings of all nodes in :data:`NODE_ORDER`."""
        return torch.cat([self.type_ego(t) for t in NODE_ORDER if self.counts[t] > 0], 0)

    def get_embedding(self, graph: KGGraph) -> tuple[Tensor, Tensor]:
        """``(user (U, d), item (I, d))`` final embeddings :math:`Z + R` (see class docstring)."""
        h = self.ego_embeddings()
        n_ui = self.num_users + self.num_items  # users and items are the first two blocks
        x = h[:n_ui]
        z = x
        for _ in range(self.num_layers):
            x = _SymmetricSpMM.apply(graph.adj, x)
            z = z + x
        z = z / (self.num_layers + 1)
        if self.kg_layers > 0:
            r, acc = h, None
            for k, conv in enumerate(self.convs):
                r = conv(r, graph.edge_index, graph.type_ptr, graph.norm)
                if k < self.kg_layers - 1:
                    r = torch.relu(r)
                acc = r if acc is None else acc + r
            g = self.kg_gate * self.kg_gate_mask  # expanded, not repeat_interleave'd: no wait on the host
            gate = torch.cat([g[0].expand(self.num_users), g[1].expand(self.num_items)])
            z = z + gate.unsqueeze(1) * acc[:n_ui] / self.kg_layers
        return z[: self.num_users], z[self.num_users:]

    def loss(self, graph: KGGraph, user: Tensor, pos_item: Tensor, neg_item: Tensor,
             reg_weight: float = 1e-4, id_reg_weight: float = 0.0) -> Tensor:
        r"""BPR loss + :math:`\frac{\lambda}{2B}` L2 on the batch's user and item ego embeddings, plus
        :math:`\frac{\mu}{2B}` L2 on the batch items' id embeddings (``id_reg_weight`` = μ).

        Raises:
            ValueError: μ > 0 when items have no id embeddings (``fusion="text"``).
        """
        ue, ie = self.get_embedding(graph)
        u = ue[user]
        bpr = nn.functional.softplus((u * ie[neg_item]).sum(-1) - (u * ie[pos_item]).sum(-1)).mean()
        eu, ei = self.type_ego("user"), self.type_ego("item")
        ego = eu[user].pow(2).sum() + ei[pos_item].pow(2).sum() + ei[neg_item].pow(2).sum()
        loss = bpr + reg_weight * 0.5 * ego / user.numel()
        if not id_reg_weight:
            return loss
        return loss + id_reg_weight * id_penalty(self.id_embeddings("item"), pos_item, neg_item, user.numel())

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(nodes={self.num_total}, users={self.num_users}, "
                f"items={self.num_items}, relations={self.num_relations}, dim={self.embedding_dim}, "
                f"layers={self.num_layers}, kg_layers={self.kg_layers}, kg_users={self.kg_users}, fusion={self.fusion}, "
                f"text={list(self.text_types)})")
