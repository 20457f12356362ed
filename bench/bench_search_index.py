"""Free-text search of large catalogues: the FAISS index of the item text vectors against scoring
every item exactly, in the same run.

Serving scores a query against every item's text vector (``serving.search.TextSearch``) below
``[serving] search_ann_min_items`` items with text, and recalls through an IVF index of those
vectors (``search_nprobe`` cells per query, ``--nprobe`` here) from there. Both paths are timed here through
``TextSearch.nearest`` on the same vectors and queries (already encoded: encoding a query with
MiniLM costs about 9 ms on two cores, ``search_demo.json``), for the ``search_candidates`` (100)
best items, taken in turn 25 queries at a time (exact, index, exact, ...) so that a neighbour's burst
of load on a shared host slows both alike. Recall@10 and @100 are the share of the exact answer that the index returns.

The vectors are synthetic, 384-d (MiniLM's width), unit length, float16 as artifacts store them:
``--topics`` topic centres with each item near one (noise of norm about ``--spread``), and queries
drawn the same way; one row per size also has structureless vectors (uniform on the sphere: every
item about equally far from a query, the index's worst case). Real text, when ``--real`` holds the
lastfm dataset (``../shared/datasets/lastfm``): the MiniLM vectors of its 17,632 artist names and
11,946 tag values, less 300 tag values that are the queries; swept over ``--real-nprobe`` and the
nprobe that scans the share of cells ``--nprobe`` scans at the largest synthetic size.

    .venv/bin/python bench/bench_search_index.py --items 100000,300000,1000000
Writes bench/results/search_index.json.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import alternating_latencies_ms, peak_rss_mb, write_result  # noqa: E402
from kgrec.config import ServingConfig  # noqa: E402
from serving.search import TextSearch  # noqa: E402

DIM = 384


def unit(x: np.ndarray) -> np.ndarray:
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


def topical(n: int, topics: int, spread: float, rng: np.random.Generator, centres: np.ndarray | None = None):
    """``n`` unit vectors, each near one of the topic centres (made when not given), and the centres."""
    if centres is None:
        centres = unit(rng.standard_normal((topics, DIM), dtype=np.float32))
    noise = rng.standard_normal((n, DIM), dtype=np.float32) * (spread / np.sqrt(DIM))
    return unit(centres[rng.integers(0, len(centres), n)] + noise), centres


def measure(items: np.ndarray, queries: np.ndarray, nprobe: int, candidates: int) -> dict:
    search = TextSearch(items.astype(np.float16), {"model": "unused: queries are given encoded"})
    vectors = [torch.from_numpy(q) for q in queries]
    truth = [search.nearest(q, candidates)[1].numpy() for q in vectors]
    t = time.perf_counter()
    search.use_index(min_items=1, nprobe=nprobe)
    build_s = time.perf_counter() - t
    index = search.index

    def answer(q: torch.Tensor, through: object) -> object:  # the same object, with or without its index
        search.index = through
        return search.nearest(q, candidates)

    timed = alternating_latencies_ms({"exact": lambda q: answer(q, None), "index": lambda q: answer(q, index)},
                                     vectors)
    exact, indexed = timed["exact"], timed["index"]
    found = [answer(q, index)[1].numpy() for q in vectors]

    def recall(k: int) -> float:
        return round(float(np.mean([len(np.intersect1d(f[:k], e[:k])) / k for f, e in zip(found, truth)])), 4)

    return {"exact": exact, "index": indexed, "speedup_p50": round(exact["p50_ms"] / indexed["p50_ms"], 1),
            "index_build_s": round(build_s, 1), "cells": int(search.index.index.nlist),
            "recall@10": recall(10), f"recall@{candidates}": recall(candidates),
            "text_vectors_mib": round(items.size * 4 / 2**20, 1)}


def real_lastfm(path: Path, queries: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """MiniLM vectors of lastfm's artist names and tag values (items) and of ``queries`` held-out
    tag values (queries)."""
    import csv

    from encoders.encode import build_encoder
    from kgrec.config import EncoderConfig

    def column(name: str, field: str) -> list[str]:
        with open(path / name, encoding="utf-8", errors="replace", newline="") as f:
            return [row[field].strip() for row in csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE)
                    if row.get(field, "").strip()]

    artists, tags = column("artists.dat", "name"), column("tags.dat", "tagValue")
    held = set(np.random.default_rng(seed).choice(len(tags), queries, replace=False).tolist())
    texts = artists + [t for j, t in enumerate(tags) if j not in held]
    encoder = build_encoder(EncoderConfig(cache_dir=None, device="cpu"), show_progress=False)
    vectors = unit(np.asarray(encoder.encode(texts + [tags[j] for j in sorted(held)]), dtype=np.float32))
    return vectors[:len(texts)], vectors[len(texts):]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", default="100000,300000,1000000")
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--topics", type=int, default=2000)
    ap.add_argument("--spread", type=float, default=0.8)
    ap.add_argument("--nprobe", type=int, default=ServingConfig.search_nprobe)
    ap.add_argument("--real-nprobe", default="5,16,32,64,128,256", help="swept on the real text")
    ap.add_argument("--candidates", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--real", default=str(Path(__file__).resolve().parents[2] / "shared" / "datasets" / "lastfm"))
    args = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    rows = {}
    sizes = [int(x) for x in args.items.split(",") if x]
    warm_rng = np.random.default_rng(args.seed + 1)  # FAISS imported and its threads started before any
    measure(topical(20_000, 50, args.spread, warm_rng)[0], topical(5, 50, args.spread, warm_rng)[0], 8, 10)  # timing
    for n in sizes:
        rng = np.random.default_rng(args.seed)
        items, centres = topical(n, args.topics, args.spread, rng)
        queries, _ = topical(args.queries, args.topics, args.spread, rng, centres)
        rows[f"{n} topical"] = measure(items, queries, args.nprobe, args.candidates)
        print(n, "topical", rows[f"{n} topical"], flush=True)
        del items
        flat = unit(rng.standard_normal((n, DIM), dtype=np.float32))
        rows[f"{n} structureless"] = measure(flat, unit(rng.standard_normal((args.queries, DIM), dtype=np.float32)),
                                             args.nprobe, args.candidates)
        print(n, "structureless", rows[f"{n} structureless"], flush=True)
        del flat
    if (Path(args.real) / "artists.dat").is_file():
        items, queries = real_lastfm(Path(args.real), 300, args.seed)
        largest = max(sizes, default=1_000_000)
        cells = max(1, min(len(items) // 39, int(4 * np.sqrt(len(items)))))
        share = args.nprobe / max(1, min(largest // 39, int(4 * np.sqrt(largest))))
        for nprobe in sorted({max(1, round(share * cells))} | {int(x) for x in args.real_nprobe.split(",") if x}):
            rows[f"lastfm text, nprobe {nprobe}"] = measure(items, queries, nprobe, args.candidates)
            print("lastfm text", nprobe, rows[f"lastfm text, nprobe {nprobe}"], flush=True)
    else:
        print(f"no real text: {args.real} does not hold the lastfm dataset")
    payload = {"rows": rows, "dim": DIM, "nprobe": args.nprobe, "candidates": args.candidates,
               "topics": args.topics, "spread": args.spread, "peak_rss_mib": round(peak_rss_mb()),
               "command": "python bench/bench_search_index.py " + " ".join(
                   f"--{a.replace('_', '-')} {v}" for a, v in vars(args).items())}
    print(write_result("search_index", payload))


if __name__ == "__main__":
    main()
