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

logger = logging.getLogger(__name__)

INDEX_FILE = "item_index.faiss"


class ItemIndex:
    """Maximum-inner-product candidates for user vectors, from a FAISS IVF index of the items."""

    MIN_ITEMS = 39  # k-means wants 39 points per cell; smaller catalogues are ranked exactly anyway

    def __init__(self, item_emb: np.ndarray, nprobe: int = 32, seed: int = 0) -> None:
        import faiss

        t = time.perf_counter()
        items = np.ascontiguousarray(item_emb, dtype=np.float32)
        n, d = items.shape
        cells = max(1, min(n // 39, int(4 * math.sqrt(n))))  # FAISS's rule of thumb; >= 39 points per cell
        sample = np.random.default_rng(seed).choice(n, min(n, 64 * cells), replace=False)
        self.index = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, cells, faiss.METRIC_INNER_PRODUCT)
        self.index.cp.seed = seed
        self.index.train(items[np.sort(sample)])
        self.index.add(items)
        self.index.nprobe = min(nprobe, cells)
        self.build_s = time.perf_counter() - t
        self.source = "built"
        logger.info("item index: %d items in %d cells, nprobe %d, built in %.1fs", n, cells, self.index.nprobe,
                    self.build_s)

    @classmethod
    def read(cls, path: str | Path, item_emb: np.ndarray, nprobe: int = 32) -> "ItemIndex":
        """An index saved by :meth:`write`, checked against the items it must hold.

        Raises:
            ValueError: it holds another number of items, or vectors of another dimension.
        """
        import faiss

        t = time.perf_counter()
        self = cls.__new__(cls)
        self.index = faiss.read_index(str(path))
        if (self.index.ntotal != item_emb.shape[0] or self.index.d != item_emb.shape[1]
                or self.index.metric_type != faiss.METRIC_INNER_PRODUCT or not hasattr(self.index, "nlist")):
            raise ValueError(f"{path} is not an inner-product IVF index of the model's {item_emb.shape[0]} items "
                             f"of dimension {item_emb.shape[1]} ({self.index.ntotal} of {self.index.d})")
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


def save_item_index(artifact_dir: str | Path, item_emb: np.ndarray, min_items: int, nprobe: int = 32) -> Path | None:
    """Build the recall index of an embedding model's items into its artifact when serving will use
    one (at least ``min_items`` items, ``[serving] ann_min_items``); None when it will not."""
    if min_items <= 0 or item_emb.shape[0] < max(min_items, ItemIndex.MIN_ITEMS):
        return None
    return ItemIndex(item_emb, nprobe).write(Path(artifact_dir) / INDEX_FILE)
