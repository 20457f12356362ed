"""Neighbour-sampled mini-batch training for R-GCN, for typed graphs larger than device memory.

How a BPR step works (``TrainConfig.sampler = "neighbor"``):

1. The trainer draws a batch of (user, positive item, negative item) triples as usual.
2. Their nodes, deduplicated, are the *seeds*. PyG's :class:`~torch_geometric.loader.NeighborLoader`
   samples their L-hop in-neighbourhood over the homogeneous typed graph of
   :meth:`RGCNRec.build_graph <gnn.models.rgcn.RGCNRec.build_graph>` (edge types kept as an edge
   attribute): at most ``num_neighbors[h]`` in-edges *of each relation* per node at hop ``h + 1``,
   uniformly without replacement, as PyG's heterogeneous sampling does per edge type. R-GCN takes
   a mean per relation, and each relation's sampled mean estimates it without bias; a fan-out over
   all relations together would mostly miss a node's rare relations (a popular item's one genre
   edge among hundreds of interactions) and train their terms as zero.
3. :meth:`RGCNRec.subgraph_loss` runs the R-GCN layers on that subgraph only (trimmed per layer with
   PyG's ``trim_to_layer`` when the sampler reports per-hop counts) and takes the BPR loss on the
   seeds. Activation memory is bounded by ``batch size x (1 + r k1 + r^2 k1 k2 + ...)`` for nodes of at
   most ``r`` relations, not by the graph.

Evaluation embeds every node *exactly* (all neighbours, no sampling), layer by layer over chunks of
target nodes (:meth:`RGCNRec.layerwise_embedding`): memory is O(N d) plus one chunk of edges.

The full typed graph stays on the CPU in CSC form; only sampled subgraphs and inference chunks move
to the training device. The embedding table itself (N x d) and its Adam state live on the device.

Sampling kernel: :class:`TorchNeighborSampler`, a subclass of PyG's ``NeighborSampler`` whose
homogeneous ``_sample`` is written in vectorised torch and draws per (node, relation). PyG's own
compiled kernels (``pyg-lib``, ``torch-sparse``; neither has a wheel on PyPI for current torch) draw
per node over a homogeneous graph, so they are not used. Everything around the kernel (CSC
conversion, the loader, ``filter_data``, the batch layout with ``n_id``, ``batch_size`` and per-hop
counts) is PyG's.
"""
from __future__ import annotations

import logging
import warnings
from typing import NamedTuple, Sequence

import torch
from torch import Tensor, nn
from torch_geometric.data import Data
from torch_geometric.sampler import NeighborSampler, SamplerOutput
from torch_geometric.sampler.base import SubgraphType

from .models.base import EmbeddingRecommender
from .models.rgcn import RGCNRec

logger = logging.getLogger(__name__)

SAMPLERS = ("full", "neighbor")
#: rejection rounds for nodes whose in-degree is far above the fan-out (leftover duplicates are dropped)
_MAX_ROUNDS = 8
#: nodes with in-degree up to this many times the fan-out are sampled by ranking random keys
_DENSE_FACTOR = 4


def _expand(start: Tensor, count: Tensor) -> tuple[Tensor, Tensor]:
    """For segments ``[start[j], start[j] + count[j])``: every position and its segment index."""
    seg = torch.repeat_interleave(torch.arange(count.numel()), count)
    first = torch.repeat_interleave(torch.cumsum(count, 0) - count, count)
    return start[seg] + torch.arange(seg.numel()) - first, seg


def _choose(colptr: Tensor, nodes: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
    """Up to ``k`` in-edges per node, uniformly without replacement (``k < 0``: all of them).

    Returns:
        ``(pos, which)``: CSC positions of the chosen edges and, for each, its index in ``nodes``.
    """
    start = colptr[nodes]
    deg = colptr[nodes + 1] - start
    if k < 0:
        return _expand(start, deg)
    pos_parts, seg_parts = [], []
    small = torch.nonzero(deg <= k).flatten()  # take every in-edge
    p, s = _expand(start[small], deg[small])
    pos_parts.append(p)
    seg_parts.append(small[s])
    mid = torch.nonzero((deg > k) & (deg <= _DENSE_FACTOR * k)).flatten()  # rank random keys
    if mid.numel():
        p, s = _expand(start[mid], deg[mid])
        order = torch.argsort(torch.rand(p.numel(), generator=generator))
        order = order[torch.argsort(s[order], stable=True)]
        s = s[order]
        rank = torch.arange(s.numel()) - (torch.cumsum(deg[mid], 0) - deg[mid])[s]
        keep = rank < k
        pos_parts.append(p[order][keep])
        seg_parts.append(mid[s[keep]])
    big = torch.nonzero(deg > _DENSE_FACTOR * k).flatten()  # draw offsets, redraw duplicates
    if big.numel():
        d = deg[big].unsqueeze(1)

        def draw() -> Tensor:  # uniform offsets in [0, d), float64 so that hubs of any degree are covered
            u = torch.rand(big.numel(), k, generator=generator, dtype=torch.float64)
            return torch.minimum((u * d).long(), d - 1)

        off = draw()
        for _ in range(_MAX_ROUNDS):
            off = off.sort(1).values
            dup = torch.zeros_like(off, dtype=torch.bool)
            dup[:, 1:] = off[:, 1:] == off[:, :-1]
            if not dup.any():
                break
            off = torch.where(dup, draw(), off)
        off = off.sort(1).values
        keep = torch.ones_like(off, dtype=torch.bool)
        keep[:, 1:] = off[:, 1:] != off[:, :-1]
        rows = torch.arange(big.numel()).unsqueeze(1).expand_as(off)
        pos_parts.append((start[big].unsqueeze(1) + off)[keep])
        seg_parts.append(big[rows[keep]])
    pos, which = torch.cat(pos_parts), torch.cat(seg_parts)
    order = torch.argsort(which, stable=True)
    return pos[order], which[order]


class RelationRuns(NamedTuple):
    """A CSC graph's in-edges grouped per (target node, relation): run ``j`` is
    ``order[ptr[j]:ptr[j + 1]]`` (CSC positions), and node ``v``'s runs are ``node[v]:node[v + 1]``."""

    order: Tensor | None  # CSC positions grouped by (target, relation); None: the CSC order already is
    ptr: Tensor
    node: Tensor

    @staticmethod
    def of(colptr: Tensor, edge_type: Tensor) -> "RelationRuns":
        """The runs of a CSC graph (``colptr`` (N + 1,)) whose edges, in CSC order, have ``edge_type``."""
        n = colptr.numel() - 1
        target = torch.repeat_interleave(torch.arange(n), colptr[1:] - colptr[:-1])
        key = target * (int(edge_type.max()) + 1 if edge_type.numel() else 1) + edge_type.long()
        order = None
        if bool((key[1:] < key[:-1]).any()):
            order = torch.argsort(key, stable=True)
            key, target = key[order], target[order]
        starts = torch.nonzero(torch.cat([torch.ones(min(1, key.numel()), dtype=torch.bool), key[1:] != key[:-1]]))
        starts = starts.flatten()
        ptr = torch.cat([starts, torch.tensor([key.numel()])])
        node = torch.searchsorted(target[starts], torch.arange(n + 1))
        return RelationRuns(order, ptr, node)

    def choose(self, nodes: Tensor, k: int, generator: torch.Generator | None) -> tuple[Tensor, Tensor]:
        """Up to ``k`` in-edges of each relation per node (``k < 0``: all): as :func:`_choose`."""
        runs, owner = _expand(self.node[nodes], self.node[nodes + 1] - self.node[nodes])
        pos, which = _choose(self.ptr, runs, k, generator)
        if self.order is not None:
            pos = self.order[pos]
        which = owner[which]
        order = torch.argsort(which, stable=True)
        return pos[order], which[order]

    def max_relations(self) -> int:
        """The most relations any node has in-edges of."""
        return int((self.node[1:] - self.node[:-1]).max()) if self.node.numel() > 1 else 0


def sample_neighbors(colptr: Tensor, row: Tensor, seed: Tensor, num_neighbors: Sequence[int],
                     generator: torch.Generator | None = None, runs: RelationRuns | None = None
                     ) -> tuple[Tensor, Tensor, Tensor, Tensor, list[int], list[int]]:
    """Directional multi-hop neighbour sampling over a CSC graph (the semantics of PyG's kernels).

    Hop ``h`` samples up to ``num_neighbors[h]`` in-edges for each node first reached at hop ``h - 1``
    (the seeds at hop 0), or of each of its relations with ``runs``; sources not seen before become
    new nodes. Nodes and edges come out in hop
    order, so PyG's ``trim_to_layer`` applies.

    Args:
        colptr: (N + 1,) CSC pointers; row: (E,) source node per CSC position.
        seed: (S,) unique global node ids.
        num_neighbors: fan-out per hop (``-1``: all in-edges).
        generator: optional torch RNG (default: the global one, which the trainer seeds and checkpoints).
        runs: the graph's :class:`RelationRuns`, to draw the fan-out per relation.

    Returns:
        ``(node, row, col, pos, num_sampled_nodes, num_sampled_edges)``: global ids of the subgraph's
        nodes (seeds first), local source and target of each sampled edge, its CSC position, and the
        per-hop counts.
    """
    seed = seed.long()
    nodes, rows, cols, poss = [seed], [], [], []
    known, known_local = torch.sort(seed)
    frontier, frontier_local = seed, torch.arange(seed.numel())
    n_total = seed.numel()
    num_nodes, num_edges = [n_total], []
    for k in num_neighbors:
        pos, which = (runs.choose(frontier, int(k), generator) if runs is not None
                      else _choose(colptr, frontier, int(k), generator))
        src = row[pos]
        at = torch.searchsorted(known, src).clamp(max=max(known.numel() - 1, 0))
        hit = known[at] == src if known.numel() else torch.zeros_like(src, dtype=torch.bool)
        new = torch.unique(src[~hit])
        local = torch.empty_like(src)
        local[hit] = known_local[at[hit]]
        local[~hit] = n_total + torch.searchsorted(new, src[~hit])
        new_local = torch.arange(n_total, n_total + new.numel())
        rows.append(local)
        cols.append(frontier_local[which])
        poss.append(pos)
        nodes.append(new)
        known, order = torch.sort(torch.cat([known, new]))
        known_local = torch.cat([known_local, new_local])[order]
        frontier, frontier_local = new, new_local
        n_total += new.numel()
        num_nodes.append(new.numel())
        num_edges.append(pos.numel())
    empty = torch.zeros(0, dtype=torch.long)
    cat = lambda parts: torch.cat(parts) if parts else empty  # noqa: E731
    return cat(nodes), cat(rows), cat(cols), cat(poss), num_nodes, num_edges


class TorchNeighborSampler(NeighborSampler):
    """PyG's ``NeighborSampler`` with a pure-torch kernel for homogeneous, directional, non-temporal
    sampling without replacement (the case kgrec uses). With ``edge_type`` given (one per edge of
    ``data``, in its order), the fan-out is drawn per relation of each node. Takes
    ``NeighborSampler``'s arguments; other modes raise ``NotImplementedError``."""

    def __init__(self, *args, generator: torch.Generator | None = None, edge_type: Tensor | None = None,
                 **kwargs) -> None:
        with warnings.catch_warnings():  # "without pyg-lib is deprecated": this class is the replacement
            warnings.simplefilter("ignore")
            super().__init__(*args, **kwargs)
        self.generator = generator
        self.runs = None
        if edge_type is not None:
            self.runs = RelationRuns.of(self.colptr, edge_type if self.perm is None else edge_type[self.perm])

    def _sample(self, seed, seed_time=None, **kwargs):  # noqa: ANN001, ANN201 - PyG's signature
        if (isinstance(seed, dict) or seed_time is not None or self.disjoint or self.replace
                or self.subgraph_type != SubgraphType.directional or self.edge_weight is not None):
            raise NotImplementedError("TorchNeighborSampler covers homogeneous directional sampling without "
                                      "replacement; install pyg-lib for the other modes")
        node, row, col, pos, nn_, ne = sample_neighbors(self.colptr, self.row, seed,
                                                        self.num_neighbors.get_mapped_values(), self.generator,
                                                        self.runs)
        # positions in the CSC order, as PyG's own kernels return: its filter_data maps them through
        # self.perm (edge_permutation) to the input's edge ids
        return SamplerOutput(node=node, row=row, col=col, edge=pos, batch=None, num_sampled_nodes=nn_,
                             num_sampled_edges=ne)


class NeighborGraph:
    """The typed graph for sampled training: CPU-resident CSC plus a PyG ``NeighborLoader``.

    Args:
        edge_index: (2, E) source/target over all node types (``RGCNRec.build_graph``'s index space).
        edge_type: (E,) relation of each edge.
        num_nodes: N.
        num_neighbors: fan-out per hop and relation, hop 1 first (``-1``: all in-edges).
    """

    def __init__(self, edge_index: Tensor, edge_type: Tensor, num_nodes: int, num_neighbors: Sequence[int]) -> None:
        from torch_geometric.loader import NeighborLoader

        if not num_neighbors or any(int(k) == 0 or int(k) < -1 for k in num_neighbors):
            raise ValueError(f"num_neighbors must be a non-empty list of positive fan-outs or -1, got {num_neighbors}")
        self.num_neighbors = [int(k) for k in num_neighbors]
        # sorted by (target, relation) once, so the sampler's CSC shares this memory and each node's
        # in-edges of one relation are one run (no permutation copies)
        ei, et = edge_index.cpu().long(), edge_type.cpu().long()
        order = torch.argsort(ei[1] * (int(et.max()) + 1 if et.numel() else 1) + et, stable=True)
        ei, et = ei[:, order], et[order]
        self.data = Data(edge_index=ei, edge_type=et, num_nodes=num_nodes)
        self.sampler = TorchNeighborSampler(self.data, num_neighbors=self.num_neighbors, is_sorted=True, edge_type=et)
        self.loader = NeighborLoader(self.data, self.num_neighbors, neighbor_sampler=self.sampler)
        self.colptr, self.row = self.sampler.colptr, self.sampler.row
        self.edge_type = et

    @property
    def num_nodes(self) -> int:
        return int(self.data.num_nodes)

    @property
    def num_edges(self) -> int:
        return int(self.data.num_edges)

    def subgraph(self, seeds: Tensor) -> Data:
        """The sampled subgraph of (S,) unique global seed ids: a PyG ``Data`` with ``n_id`` (seeds
        first), local ``edge_index``, ``edge_type``, ``batch_size = S`` and, from the torch and pyg-lib
        kernels, ``num_sampled_nodes`` / ``num_sampled_edges`` per hop."""
        return self.loader(seeds.cpu().long())

    def max_subgraph_nodes(self, num_seeds: int) -> int:
        """Upper bound on a subgraph's nodes for ``num_seeds`` seeds: S (1 + r k1 + r^2 k1 k2 + ...)
        for nodes of at most r relations, capped at N."""
        total, width, r = num_seeds, num_seeds, self.sampler.runs.max_relations()
        for k in self.num_neighbors:
            width = width * r * k if k > 0 else self.num_nodes
            total += width
        return min(total, self.num_nodes)

    def __repr__(self) -> str:
        return (f"{self.__class__.__name__}(nodes={self.num_nodes}, edges={self.num_edges}, "
                f"num_neighbors={self.num_neighbors} per relation)")


class NeighborSampledRGCN(EmbeddingRecommender):
    """An :class:`RGCNRec` trained on neighbour-sampled subgraphs, with the trainer's model surface
    (``loss``, ``get_embedding``, ``forward``, ``recommend``) over a :class:`NeighborGraph`.

    Args:
        model: the R-GCN whose parameters are trained.
        inference_edges: in-edges per chunk of the exact layer-wise inference.
    """

    def __init__(self, model: RGCNRec, inference_edges: int = 2 ** 19) -> None:
        super().__init__()
        if not isinstance(model, RGCNRec):
            raise ValueError(f"neighbour sampling is implemented for R-GCN only, not {type(model).__name__}")
        self.model = model
        self.inference_edges = int(inference_edges)

    def seeds(self, user: Tensor, pos_item: Tensor, neg_item: Tensor) -> tuple[Tensor, Tensor]:
        """Unique global seed ids of a batch of triples and, for each of the 3B triple nodes, its seed position."""
        off = self.model.offsets
        flat = torch.cat([user + off["user"], pos_item + off["item"], neg_item + off["item"]]).cpu()
        return torch.unique(flat, return_inverse=True)

    def loss(self, graph: NeighborGraph, user: Tensor, pos_item: Tensor, neg_item: Tensor,
             reg_weight: float = 1e-4) -> Tensor:
        """BPR loss of (B,) triples on the sampled L-hop subgraph of their nodes."""
        seeds, inv = self.seeds(user, pos_item, neg_item)
        batch = graph.subgraph(seeds)
        dev = self.model.embedding.weight.device
        b = user.numel()
        inv = inv.to(dev)
        return self.model.subgraph_loss(batch.n_id.to(dev), batch.edge_index.to(dev), batch.edge_type.to(dev),
                                        int(batch.batch_size), inv[:b], inv[b:2 * b], inv[2 * b:], reg_weight,
                                        getattr(batch, "num_sampled_nodes", None),
                                        getattr(batch, "num_sampled_edges", None))

    def get_embedding(self, graph: NeighborGraph) -> tuple[Tensor, Tensor]:
        """Exact ``(user (U, d), item (I, d))`` by layer-wise inference over all neighbours (no gradient)."""
        return self.model.layerwise_embedding(graph.colptr, graph.row, graph.edge_type, self.inference_edges)

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}({self.model!r}, inference_edges={self.inference_edges})"


def fan_out(num_neighbors: Sequence[int], num_layers: int) -> list[int]:
    """One fan-out per layer: a shorter list repeats its last entry.

    Raises:
        ValueError: an empty list, an entry that is neither a positive fan-out nor -1, or more
            entries than layers.
    """
    k = [int(v) for v in num_neighbors]
    if not k:
        raise ValueError("num_neighbors must not be empty")
    if any(v == 0 or v < -1 for v in k):  # else refused only by NeighborGraph, after the export and graph build
        raise ValueError(f"num_neighbors must be positive fan-outs or -1 (all in-edges), got {k}")
    if len(k) > num_layers:
        raise ValueError(f"num_neighbors has {len(k)} hops but the model has {num_layers} layers")
    if len(k) < num_layers:
        logger.info("num_neighbors %s padded to %d layers with its last entry", k, num_layers)
    return k + [k[-1]] * (num_layers - len(k))


def prepare(model: nn.Module, graph: tuple[Tensor, Tensor], sampler: str, num_neighbors: Sequence[int]
            ) -> tuple[NeighborSampledRGCN, NeighborGraph]:
    """The trainer's hook: wrap the model and its full typed graph for neighbour-sampled training.

    Args:
        model: the built model (an :class:`RGCNRec`).
        graph: ``(edge_index, edge_type)`` from ``RGCNRec.build_graph`` (kept on CPU).
        sampler: ``TrainConfig.sampler``.
        num_neighbors: ``TrainConfig.num_neighbors``.

    Raises:
        ValueError: unknown sampler, a model other than R-GCN, or a bad fan-out.
    """
    if sampler not in SAMPLERS:
        raise ValueError(f"unknown sampler {sampler!r}; choose from {SAMPLERS}")
    if not isinstance(model, RGCNRec):
        raise ValueError(f"sampler {sampler!r} is implemented for model 'rgcn' only")
    edge_index, edge_type = graph
    ng = NeighborGraph(edge_index, edge_type, model.num_total, fan_out(num_neighbors, model.num_layers))
    logger.info("neighbour-sampled training over %r", ng)
    return NeighborSampledRGCN(model), ng
