"""The export snapshot: the plain on-disk artifact that encoders and gnn read.

Layout of a snapshot directory::

    meta.json            format version, name, counts, relation schema, split description
    ids.json             external ids per node type (index = internal id) and entity types
    texts.json           item titles/descriptions, query texts, entity names (aligned with ids)
    interactions.npz     per split: <split>_user, <split>_item, <split>_weight, <split>_ts, <split>_kind
    relations.npz        per relation name: int64 array of shape (2, E) (source row, target row)

Node types are ``user``, ``item``, ``query``, ``entity``. ``meta["relations"]`` maps each relation
name to ``[source_type, target_type]``. Interaction kinds are codes into ``meta["kinds"]``.
"""
from __future__ import annotations

import errno
import json
import os
import secrets
import shutil
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .durable import sync_dir, sync_files

FORMAT_VERSION = 1
NODE_TYPES = ("user", "item", "query", "entity")
SPLITS = ("train", "valid", "test")


def rank_within_runs(keys: np.ndarray) -> np.ndarray:
    """Each element's position within its run of equal ``keys`` (grouped): [5, 5, 7, 7, 7] -> [0, 1, 0, 1, 2]."""
    if not len(keys):
        return np.zeros(0, np.int64)
    starts = np.r_[0, np.flatnonzero(np.diff(keys)) + 1]
    return np.arange(len(keys)) - np.repeat(starts, np.diff(np.r_[starts, len(keys)]))


@dataclass
class Interactions:
    """Interactions of one split as aligned arrays (internal ids)."""

    user: np.ndarray
    item: np.ndarray
    weight: np.ndarray
    ts: np.ndarray
    kind: np.ndarray

    @classmethod
    def empty(cls) -> "Interactions":
        z = np.zeros(0, dtype=np.int64)
        return cls(z, z.copy(), np.zeros(0, dtype=np.float32), z.copy(), np.zeros(0, dtype=np.int16))

    def __len__(self) -> int:
        return int(self.user.shape[0])

    def take(self, index: np.ndarray) -> "Interactions":
        """Rows at ``index`` (a boolean mask or integer positions)."""
        return Interactions(self.user[index], self.item[index], self.weight[index], self.ts[index], self.kind[index])


@dataclass
class Snapshot:
    """A graph exported for training: id maps, texts, split interactions and typed edges."""

    ids: dict[str, list[str]]
    entity_types: list[str]
    item_titles: list[str]
    item_descriptions: list[str]
    query_texts: list[str]
    entity_names: list[str]
    splits: dict[str, Interactions]
    relations: dict[str, np.ndarray] = field(default_factory=dict)
    relation_types: dict[str, tuple[str, str]] = field(default_factory=dict)
    kinds: list[str] = field(default_factory=lambda: ["interact"])
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def num_users(self) -> int:
        return len(self.ids["user"])

    @property
    def num_items(self) -> int:
        return len(self.ids["item"])

    def num_nodes(self, node_type: str) -> int:
        return len(self.ids[node_type])

    def index(self, node_type: str) -> dict[str, int]:
        """External id -> internal row for one node type."""
        return {v: i for i, v in enumerate(self.ids[node_type])}

    def item_entity_edges(self) -> np.ndarray:
        """(2, E) (item row, entity row) of every item->entity relation (attributes, KG links), in
        relation order."""
        edges = [self.relations[r] for r, (src, dst) in self.relation_types.items()
                 if src == "item" and dst == "entity" and r in self.relations]
        return np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)

    def entity_entity_edges(self) -> np.ndarray:
        """(2, T) (head entity row, tail entity row) of every knowledge-graph triple, in relation order."""
        edges = [self.relations[r] for r, (src, dst) in self.relation_types.items()
                 if src == "entity" and dst == "entity" and r in self.relations]
        return np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)

    def item_attribute_names(self) -> list[list[str]]:
        """For each item, the names of the entities it links to through item->entity relations that
        are words: not ``same_as`` links (to the item's own knowledge-graph node, named by a Freebase
        ``m.04ctbw8`` say), nor a knowledge-graph node created for a reference, whose name is its id
        (``kg:3846``). A brand whose id is its name (``Nike``) is a word."""
        names: list[list[str]] = [[] for _ in range(self.num_items)]
        ids, kinds = self.ids["entity"], self.entity_types
        words = np.array([bool(n) and not (n == ids[e] and kinds[e] == "kg") for e, n in enumerate(self.entity_names)],
                         dtype=bool)
        for rel, (src, dst) in self.relation_types.items():
            if src != "item" or dst != "entity" or rel not in self.relations or rel == "has:same_as":
                continue
            edges = self.relations[rel]
            edges = edges[:, words[edges[1]]] if len(words) else edges[:, :0]
            for start in range(0, edges.shape[1], 65536):  # as Python ints a chunk at a time, not all at once
                for i, e in zip(*edges[:, start:start + 65536].tolist()):
                    names[i].append(self.entity_names[e])
        return names

    def save(self, path: str | Path) -> Path:
        """Write the snapshot to ``path`` (a directory; written to a temp dir of its own, synced to
        disk, then renamed).

        Two saves never share a temp dir, and a crashed save leaves only a hidden ``.<name>.*.tmp``.
        A missing or empty ``path`` (the name an export claimed) is replaced in one rename, so another
        export can never take the name in between; one that holds files is swapped out and removed.
        """
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
        tmp.mkdir()
        try:
            meta = self._write_files(tmp)
            sync_files(tmp)  # a power cut after the rename must not leave meta.json beside a torn .npz
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        try:
            os.rename(tmp, path)  # POSIX replaces an empty directory atomically, refuses a full one
        except OSError as e:
            if e.errno not in (errno.ENOTEMPTY, errno.EEXIST):
                shutil.rmtree(tmp, ignore_errors=True)
                raise
            old = tmp.with_suffix(".old")  # swap: the old directory goes aside under a unique name
            path.rename(old)
            tmp.rename(path)
            shutil.rmtree(old)
        sync_dir(path.parent)
        self.meta = meta
        return path

    def _write_files(self, tmp: Path) -> dict:
        """Write every file of the snapshot into ``tmp``; return the meta written."""
        meta = {
            **self.meta,
            "format_version": FORMAT_VERSION,
            "counts": {t: len(self.ids[t]) for t in NODE_TYPES},
            "interactions": {s: len(self.splits.get(s, Interactions.empty())) for s in SPLITS},
            "relations": {r: list(t) for r, t in self.relation_types.items()},
            "edges": {r: int(e.shape[1]) for r, e in self.relations.items()},
            "kinds": list(self.kinds),
        }
        meta.setdefault("created", time.strftime("%Y-%m-%dT%H:%M:%S"))
        (tmp / "meta.json").write_text(json.dumps(meta, indent=2), encoding="utf-8")
        (tmp / "ids.json").write_text(json.dumps({**self.ids, "entity_types": self.entity_types}), encoding="utf-8")
        (tmp / "texts.json").write_text(json.dumps({
            "item_title": self.item_titles, "item_description": self.item_descriptions,
            "query_text": self.query_texts, "entity_name": self.entity_names}, ensure_ascii=False), encoding="utf-8")
        arrays: dict[str, np.ndarray] = {}
        for split in SPLITS:
            inter = self.splits.get(split, Interactions.empty())
            for col in ("user", "item", "weight", "ts", "kind"):
                arrays[f"{split}_{col}"] = getattr(inter, col)
        np.savez(tmp / "interactions.npz", **arrays)
        np.savez(tmp / "relations.npz", **{r: e.astype(np.int64) for r, e in self.relations.items()})
        return meta

    @classmethod
    def load(cls, path: str | Path) -> "Snapshot":
        """Read a snapshot written by :meth:`save` (through a ``-latest`` link: the one it names when
        called, every file from that one, whatever an export re-points meanwhile)."""
        path = Path(path).resolve()
        if not (path / "meta.json").is_file():
            raise FileNotFoundError(f"{path} is not a kgrec snapshot (no meta.json)")
        meta = json.loads((path / "meta.json").read_text(encoding="utf-8"))
        if meta.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"snapshot format {meta.get('format_version')} is not {FORMAT_VERSION}")
        ids = json.loads((path / "ids.json").read_text(encoding="utf-8"))
        texts = json.loads((path / "texts.json").read_text(encoding="utf-8"))
        with np.load(path / "interactions.npz") as z:
            splits = {s: Interactions(*(z[f"{s}_{c}"] for c in ("user", "item", "weight", "ts", "kind")))
                      for s in SPLITS}
        with np.load(path / "relations.npz") as z:
            relations = {r: z[r] for r in z.files}
        entity_types = ids.pop("entity_types")
        return cls(ids=ids, entity_types=entity_types, item_titles=texts["item_title"],
                   item_descriptions=texts["item_description"], query_texts=texts["query_text"],
                   entity_names=texts["entity_name"], splits=splits, relations=relations,
                   relation_types={r: tuple(t) for r, t in meta["relations"].items()},
                   kinds=meta["kinds"], meta=meta)

    def to_hetero_data(self, split: str = "train"):
        """The graph as ``torch_geometric.data.HeteroData``: node counts, the given split's
        interactions as ``(user, interacts, item)`` plus reverse, and every typed relation."""
        import torch
        from torch_geometric.data import HeteroData

        data = HeteroData()
        for t in NODE_TYPES:
            data[t].num_nodes = self.num_nodes(t)
        inter = self.splits[split]
        ui = torch.from_numpy(np.stack([inter.user, inter.item]).astype(np.int64))
        data["user", "interacts", "item"].edge_index = ui
        data["user", "interacts", "item"].edge_weight = torch.from_numpy(inter.weight.astype(np.float32))
        data["item", "rev_interacts", "user"].edge_index = ui.flip(0)
        for rel, (src, dst) in self.relation_types.items():
            data[src, rel, dst].edge_index = torch.from_numpy(self.relations[rel].astype(np.int64))
        return data
