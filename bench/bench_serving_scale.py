"""Serving latency of the exact top-k over large catalogues, against Neo4j's vector index in the same run.

kgrec serves by scoring every item exactly (``serving.Recommender``: one matrix-vector product and a
top-k, the user's own items masked) rather than by an approximate recall stage. This bench measures
what that costs as the catalogue grows, with random 64-dimensional embeddings:

- single requests: ``Recommender.recommend(user, k)`` latency (p50/p95 over ``--requests`` users),
  exact and through the FAISS recall (``serving.recall``, the product's default 300 candidates from
  32 cells), with the recall's index build time and its overlap with the exact top-k;
- batches: ``recommend_many`` of 256 users (fewer above a million items, to keep the score matrix
  under 1 GB), time per user;
- the baseline beside it: the same top-k asked of Neo4j's HNSW vector index
  (``db.index.vector.queryNodes`` through the driver, ``cypher/serving`` style), on the first
  ``--neo4j-items`` items written by ``serving.writeback`` to the bench's own server
  (``.kgrec/neo4j-bench``, ports 7692/7479, wiped, stopped afterwards; never NEO4J_URI's server),
  measured after the exact rows so that the server's background work does not slow them. The index ranks by
  cosine and returns the user's own items too (asked for k + 30 and filtered), so its lists differ
  from the exact dot-product ones; only the time is compared.

    .venv/bin/python bench/bench_serving_scale.py --items 100000,1000000,4000000 --neo4j-items 100000
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import peak_rss_mb, write_result  # noqa: E402
from bench.bench_ingest_write import bench_neo4j_config  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.ingest import ingest  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.records import GraphRecords  # noqa: E402
from kg.schema import apply_schema, wipe  # noqa: E402
from kgrec.config import IngestConfig, Neo4jConfig, ServingConfig  # noqa: E402
from serving.recommender import Recommender  # noqa: E402
from serving.writeback import write_back  # noqa: E402

DIM, SEEN = 64, 30


def make_recommender(num_items: int, num_users: int, seed: int = 0) -> Recommender:
    """Clustered random embeddings (as trained ones are: 1,000 taste clusters, items and users
    scattered around them); of each user's ``SEEN`` interactions two thirds lie in their own
    cluster (where the recall looks, so the masking matters) and one third anywhere."""
    rng = np.random.default_rng(seed)
    centres = 2 * rng.standard_normal((1000, DIM), dtype=np.float32)
    item_cluster = rng.integers(0, 1000, num_items)
    user_cluster = rng.integers(0, 1000, num_users)
    items = centres[item_cluster] + rng.standard_normal((num_items, DIM), dtype=np.float32)
    users = centres[user_cluster] + rng.standard_normal((num_users, DIM), dtype=np.float32)
    by_cluster = np.argsort(item_cluster, kind="stable")
    starts = np.searchsorted(item_cluster[by_cluster], np.arange(1001))
    seen = []
    for c in user_cluster:
        members = by_cluster[starts[c]:starts[c + 1]]
        near = rng.choice(members, min(len(members), 2 * SEEN // 3), replace=False)
        anywhere = rng.choice(num_items, SEEN - len(near), replace=False)
        row = np.unique(np.concatenate([near, anywhere]))
        while len(row) < SEEN:  # the rare collision: top up
            row = np.unique(np.concatenate([row, rng.choice(num_items, SEEN - len(row))]))
        seen.append(row)
    seen = np.concatenate(seen)
    indptr = np.arange(0, num_users * SEEN + 1, SEEN)
    return Recommender(users, items, [f"u{u}" for u in range(num_users)], [f"i{i}" for i in range(num_items)],
                       [""] * num_items, indptr, seen, indptr, seen)


def percentiles(seconds: list[float]) -> dict[str, float]:
    ms = sorted(1000 * s for s in seconds)
    return {"p50_ms": round(statistics.median(ms), 3), "p95_ms": round(ms[int(0.95 * (len(ms) - 1))], 3)}


def exact_latency(rec: Recommender, requests: int, k: int) -> dict[str, float]:
    users = rec.user_ids[:requests]
    rec.recommend(users[0], k)  # warm-up
    single = []
    for u in users:
        t = time.perf_counter()
        rec.recommend(u, k)
        single.append(time.perf_counter() - t)
    batch = users[:min(256, max(1, 2**28 // len(rec.item_ids)))]  # a (batch, items) score matrix under 1 GB
    t = time.perf_counter()
    rec.recommend_many(batch, k)
    per_user = (time.perf_counter() - t) / len(batch)
    return {**percentiles(single), "batch_users": len(batch), "batch_ms_per_user": round(1000 * per_user, 3)}


def recall_latency(rec: Recommender, requests: int, k: int) -> dict[str, float]:
    """The same requests through the FAISS recall (serving.recall) at the product's default settings,
    and how many of the exact top-k it returns."""
    users = rec.user_ids[:requests]
    exact = [{r.item_id for r in recs} for recs in rec.recommend_many(users, k)]
    t = time.perf_counter()
    rec.use_index(ServingConfig(ann_min_items=1))
    build_s = time.perf_counter() - t
    row = exact_latency(rec, requests, k)
    found = [len(exact_top & {r.item_id for r in rec.recommend(u, k)}) / k for u, exact_top in zip(users, exact)]
    rec.use_index(ServingConfig(ann_min_items=0))
    return {**row, "index_build_s": round(build_s, 1), f"overlap_with_exact@{k}": round(float(np.mean(found)), 4)}


def neo4j_latency(rec: Recommender, cfg: Neo4jConfig, requests: int, k: int) -> dict[str, float]:
    with connect(cfg) as graph:
        wipe(graph)
        apply_schema(graph)
        ingest(graph, GraphRecords(items=[{"id": i} for i in rec.item_ids]), IngestConfig(), progress=False)
        t = time.perf_counter()
        write_back(graph, rec, k=k, users=[])  # item and user vectors, the index, awaited online
        load_s = time.perf_counter() - t
        query = ("CALL db.index.vector.queryNodes('item_embedding', $n, $vector) YIELD node, score "
                 "WHERE NOT node.id IN $seen RETURN node.id AS id, score LIMIT $k")
        vectors = rec.user_emb[:requests].tolist()
        seen = [rec.seen_items(u) for u in rec.user_ids[:requests]]
        for vector, own in zip(vectors[:50], seen[:50]):  # warm-up: the server's JIT and page cache
            graph.driver.execute_query(query, n=k + SEEN, vector=vector, seen=own, k=k, database_=graph.database)
        single = []
        for vector, own in zip(vectors, seen):
            t = time.perf_counter()
            graph.driver.execute_query(query, n=k + SEEN, vector=vector, seen=own, k=k, database_=graph.database)
            single.append(time.perf_counter() - t)
        wipe(graph)
    return {**percentiles(single), "load_and_index_s": round(load_s, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--items", default="100000,1000000", help="catalogue sizes, comma-separated")
    p.add_argument("--users", type=int, default=2000)
    p.add_argument("--requests", type=int, default=200)
    p.add_argument("-k", type=int, default=10)
    p.add_argument("--neo4j-items", type=int, default=100000, help="catalogue size for the Neo4j baseline (0: skip)")
    p.add_argument("--heap", default="2g", help="heap and page cache of the bench's own Neo4j server")
    p.add_argument("--out", default="serving_scale")
    args = p.parse_args()

    rows = []
    for n in (int(x) for x in args.items.split(",")):  # exact first, with no Neo4j busy beside it
        rec = make_recommender(n, args.users)
        rows.append({"items": n, "exact": exact_latency(rec, args.requests, args.k),
                     "faiss_recall": recall_latency(rec, args.requests, args.k)})
        rows[-1]["recall_over_exact_p50"] = round(rows[-1]["faiss_recall"]["p50_ms"] / rows[-1]["exact"]["p50_ms"], 3)
        print(rows[-1], flush=True)
        del rec
    if args.neo4j_items:
        cfg = bench_neo4j_config(args.heap)
        server = ManagedNeo4j(cfg) if cfg.managed else None
        if server is not None:
            server.start()
        rec = make_recommender(args.neo4j_items, args.users)
        row = next((r for r in rows if r["items"] == args.neo4j_items), None)
        if row is None:
            row = {"items": args.neo4j_items, "exact": exact_latency(rec, args.requests, args.k)}
            rows.append(row)
        row["neo4j_vector_index"] = neo4j_latency(rec, cfg, args.requests, args.k)
        row["exact_over_neo4j_p50"] = round(row["exact"]["p50_ms"] / row["neo4j_vector_index"]["p50_ms"], 3)
        print(row, flush=True)
        if server is not None:
            server.stop()
    out = write_result(args.out, {"command": " ".join(sys.argv), "dim": DIM, "k": args.k, "users": args.users,
                                  "requests": args.requests, "torch_threads": torch.get_num_threads(),
                                  "rows": rows, "peak_rss_mb": round(peak_rss_mb(), 1)})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
