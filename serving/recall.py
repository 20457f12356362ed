"""Approximate recall for large catalogues: a FAISS inverted-file index over the item embeddings.

Below ``[serving] ann_min_items`` serving ranks every item exactly (``bench/bench_serving_scale.py``:
28 ms per request at a million items on two cores). Above, ``Recommender`` asks this index for a few hundred
candidates by inner product and ranks only those, exactly, with the user's own items removed. The
index is an ``IndexIVFFlat``: k-means cells over the item vectors, of which a query scans the
``ann_nprobe`` whose centroids score highest, so it returns true inner products of a subset of
items; ``ann_candidates`` of them are ranked per request. It serves known users' requests (and
so write-back); a cold-start user's and ``similar_items`` are one product each and stay exact.
Building the index takes a while (66 s for a million 64-dimensional items on two cores), so
``kgrec train``/``retrain`` build it before publishing a model that will need it and keep it in the
artifact (``item_index.faiss``, :func:`save_item_index`); serving reads it from there in seconds
and builds one only for an artifact without it.
"""
from __future__ import annotations

import logging
import math
import os
import time
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)

INDEX_FILE = "item_index.faiss"


class ItemIndex:
    """Maximum-inner-product candidates for user vectors, from a FAISS IVF index of the items."""

    MIN_ITEMS = 39  # k-means wants 39 points per cell; smaller catalogues are ranked exactly anyway

    def __init__(self, item_emb: np.ndarray, nprobe: int = 32, seed: int = 0, rows: np.ndarray | None = None) -> None:
        """Index ``item_emb``'s vectors; with ``rows``, they are those item rows' vectors (a subset)
        and searches return those rows."""
        import faiss

        t = time.perf_counter()
        items = np.ascontiguousarray(item_emb, dtype=np.float32)
        n, d = items.shape
        if rows is not None and len(rows) != n:
            raise ValueError(f"{len(rows)} item rows for {n} vectors")
        cells = max(1, min(n // 39, int(4 * math.sqrt(n))))  # FAISS's rule of thumb; >= 39 points per cell
        sample = np.random.default_rng(seed).choice(n, min(n, 64 * cells), replace=False)
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.train(items[np.sort(sample)])
        if rows is None:
            self.index.add(items)
        else:
            self.index.add_with_ids(items, np.asarray(rows, dtype=np.int64))
        self.index.nprobe = min(nprobe, cells)
        self.build_s = time.perf_counter() - t
        self.source = "built"
        logger.info("item index: %d items in %d cells, nprobe %d, built in %.1fs", n, cells, self.index.nprobe,
                    self.build_s)

    @classmethod
    def read(cls, path: str | Path, count: int, dim: int, nprobe: int = 32) -> "ItemIndex":
        """An index saved by :meth:`write`, checked against the ``count`` vectors of dimension
        ``dim`` it must hold.

        Raises:
            ValueError: it holds another number of vectors, or vectors of another dimension.
        """
        import faiss

        t = time.perf_counter()
        self = cls.__new__(cls)
        self.index = faiss.read_index(str(path))
        if (self.index.ntotal != count or self.index.d != dim
                or self.index.metric_type != faiss.METRIC_INNER_PRODUCT or not hasattr(self.index, "nlist")):
            raise ValueError(f"{path} is not an inner-product IVF index of the model's {count} items "
                             f"of dimension {dim} ({self.index.ntotal} of {self.index.d})")
        self.index.nprobe = min(nprobe, self.index.nlist)
        self.build_s = time.perf_counter() - t
        self.source = str(path)
        logger.info("item index: read %d items in %d cells from %s in %.1fs", self.index.ntotal, self.index.nlist,
                    path, self.build_s)
        return self

    def write(self, path: str | Path) -> Path:
        """Save the index to ``path`` (atomically: a temporary file renamed)."""
        import faiss

        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        faiss.write_index(self.index, str(tmp))
        os.replace(tmp, path)
        return path

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) inner products and item rows of each query's candidates, best first; row -1 pads
        a query whose scanned cells hold fewer than ``n`` items."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)


def uses_index(count: int, min_items: int) -> bool:
    """Whether ``count`` vectors are recalled through an index at the threshold ``min_items``
    (``[serving] ann_min_items`` / ``search_ann_min_items``; 0 or less: never)."""
    return min_items > 0 and count >= max(min_items, ItemIndex.MIN_ITEMS)


def saved_or_new_index(saved: Path | None, vectors: np.ndarray, nprobe: int,
                       rows: np.ndarray | None = None) -> ItemIndex:
    """The index saved at ``saved`` (``kgrec train`` writes one when serving will need it) when it
    holds as many vectors as it must, else a new one of ``vectors`` (of its ``rows`` when given)."""
    count = len(vectors) if rows is None else len(rows)
    if saved is not None and saved.is_file():
        try:
            return ItemIndex.read(saved, count, vectors.shape[1], nprobe)
        except Exception:  # an unreadable or mismatched file costs a rebuild, not the model
            logger.exception("could not use %s; building the index again", saved)
    return ItemIndex(vectors if rows is None else vectors[rows], nprobe, rows=rows)


def finite_rows(vectors: np.ndarray) -> np.ndarray | None:
    """Rows of ``vectors`` without a NaN or infinity, or None when that is every row (an index of
    the finite rows only: one broken row would otherwise fail FAISS's training)."""
    finite = np.isfinite(vectors).all(axis=1)
    return None if finite.all() else np.flatnonzero(finite)


def save_item_index(artifact_dir: str | Path, item_emb: np.ndarray, min_items: int, nprobe: int = 32) -> Path | None:
    """Build the recall index of an embedding model's items (their finite rows) into its artifact
    when serving will use one (at least ``min_items`` items, ``[serving] ann_min_items``); None
    when it will not."""
    if not uses_index(item_emb.shape[0], min_items):
        return None
    rows = finite_rows(item_emb)
    vectors = item_emb if rows is None else item_emb[rows]
    return ItemIndex(vectors, nprobe, rows=rows).write(Path(artifact_dir) / INDEX_FILE)


def top_k(scores: torch.Tensor, k: int, rows: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """The best ``k`` finite ``scores`` and their positions (their ``rows``, when given), best first.
    A NaN (a broken embedding row) is never returned: topk would put it first. Equal scores come in
    row order, so a list does not depend on how the scores were gathered (a graph filter gives many
    items exactly 0; items of one title have one text vector).

    Raises:
        ValueError: ``k`` below 0.
    """
    if k < 0:
        raise ValueError(f"k must be >= 0, got {k}")
    finite = torch.isfinite(scores)
    if not bool(finite.all()):
        scores = scores.masked_fill(~finite, float("-inf"))
    k = min(k, int(finite.sum()))
    values, index = torch.topk(scores, k)
    if k and int((scores == values[-1]).sum()) > int((values == values[-1]).sum()):
        # the k-th score is tied beyond the list: which of those make it is decided by row
        above = torch.nonzero(scores > values[-1]).squeeze(1)
        tied = torch.nonzero(scores == values[-1]).squeeze(1)  # in position order
        need = k - len(above)
        tied = tied[:need] if rows is None else tied[torch.topk(-rows[tied], need).indices]
        index = torch.cat([above, tied])
    if k:  # by score, ties in row order
        index = index[torch.argsort(index if rows is None else rows[index])]
        index = index[torch.argsort(scores[index], descending=True, stable=True)]
        values = scores[index]
    return values, (index if rows is None else rows[index])
