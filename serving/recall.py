"""Approximate recall for large catalogues: a FAISS inverted-file index over the item embeddings.

Below ``[serving] ann_min_items`` serving ranks every item exactly (``bench/bench_serving_scale.py``:
28 ms per request at a million items on two cores). Above, ``Recommender`` asks this index for a few hundred
candidates by inner product and ranks only those, exactly, with the user's own items removed. The
index is an ``IndexIVFFlat``: k-means cells over the item vectors, of which a query scans the
``ann_nprobe`` whose centroids score highest, so it returns true inner products of a subset of
items; ``ann_candidates`` of them are ranked per request. It serves known users' requests (and
so write-back); a cold-start user's and ``similar_items`` are one product each and stay exact.
The index is built when the model loads (66 s for a million 64-dimensional items on two cores).
"""
from __future__ import annotations

import logging
import math
import time

import numpy as np

logger = logging.getLogger(__name__)


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
        logger.info("item index: %d items in %d cells, nprobe %d, built in %.1fs", n, cells, self.index.nprobe,
                    self.build_s)

    def search(self, queries: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
        """(B, n) inner products and item rows of each query's candidates, best first; row -1 pads
        a query whose scanned cells hold fewer than ``n`` items."""
        return self.index.search(np.ascontiguousarray(queries, dtype=np.float32), n)
