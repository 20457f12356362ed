"""Co-purchase graph recall for Browser users: three versions of
``cypher/serving/graph_recall_copurchase.cypher`` alternated on the same database in the same run:
before session 31 (each peer's whole history expanded once per item they share with the user),
session 31 (each peer's overlap counted first) and session 34 (each peer's items made distinct on
their own, so no set of every (peer, item) pair is held).

Loads gowalla (both splits: 1,027,370 interactions) into the benches' own managed server with the
offline importer, picks users by how many items they hold (the median, the 90th and 99th
percentiles, the heaviest), checks that every statement returns the same list, and reports the
database hits and the peak memory (``GlobalMemory``) PROFILE counts and the median latency of
``--repeats`` runs of each.

    .venv/bin/python bench/bench_graph_recall.py [--k 20] [--repeats 3] [--stop]

Uses ``.kgrec/neo4j-bench`` (ports 7692/7479, its database replaced; never NEO4J_URI's server).
Writes ``bench/results/graph_recall_copurchase.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cypher  # noqa: E402
from bench._common import neo4j_config, plan_operators, write_result  # noqa: E402
from kg.bulk_import import bulk_import  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.sources import load_source  # noqa: E402
from neo4j.exceptions import TransientError  # noqa: E402

DATA = Path(__file__).resolve().parents[2] / "shared" / "datasets" / "gowalla"

BEFORE = """
MATCH (u:User {id: $user_id})-[:INTERACTED]->(s:Item)
WITH u, collect(DISTINCT s) AS mine
UNWIND mine AS shared
MATCH (shared)<-[:INTERACTED]-(peer:User)
WHERE peer <> u
WITH DISTINCT mine, shared, peer
MATCH (peer)-[:INTERACTED]->(cand:Item)
WHERE NOT cand IN mine
WITH DISTINCT cand, shared, peer
RETURN cand.id AS item_id, count(*) AS support
ORDER BY support DESC, item_id
LIMIT $k
"""


SESSION_31 = """
MATCH (u:User {id: $user_id})-[:INTERACTED]->(s:Item)
WITH u, collect(DISTINCT s) AS mine
CALL (u, mine) {
  UNWIND mine AS shared
  MATCH (shared)<-[:INTERACTED]-(peer:User)
  WHERE peer <> u
  WITH peer, count(DISTINCT shared) AS overlap
  MATCH (peer)-[:INTERACTED]->(cand:Item)
  WITH DISTINCT peer, overlap, cand
  RETURN cand, sum(overlap) AS support
}
WITH mine, cand, support
WHERE NOT cand IN mine
RETURN cand.id AS item_id, support
ORDER BY support DESC, item_id
LIMIT $k
"""


def run(graph, text: str, **params) -> tuple[list[tuple], float]:
    t = time.perf_counter()
    rows = [(r["item_id"], r["support"]) for r in graph.driver.execute_query(text, database_=graph.database,
                                                                             **params).records]
    return rows, time.perf_counter() - t


def profile(graph, text: str, **params) -> tuple[int, int | None]:
    """Total database hits of the statement's plan and its peak memory in bytes, as PROFILE counts them."""
    summary = graph.driver.execute_query("PROFILE " + text, database_=graph.database, **params).summary
    return (sum(int(node.get("dbHits", 0)) for node in plan_operators(summary.profile)),
            summary.profile.get("args", {}).get("GlobalMemory"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DATA)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--stop", action="store_true", help="stop the bench server afterwards")
    args = ap.parse_args()

    config = neo4j_config(args.heap)
    records = load_source("lightgcn", args.data).records
    held = Counter(r["user"] for r in records.interactions)
    by_size = sorted(held, key=lambda u: (held[u], u))
    picks = {"median": by_size[len(by_size) // 2], "p90": by_size[int(len(by_size) * 0.9)],
             "p99": by_size[int(len(by_size) * 0.99)], "heaviest": by_size[-1]}
    print(f"{len(records.interactions):,} interactions; users {picks}; bulk import …", flush=True)
    imported = bulk_import(records, config)
    statements = {"before (expand per shared item)": BEFORE, "session 31 (overlap per peer)": SESSION_31,
                  "now (distinct items per peer)": cypher.load("serving/graph_recall_copurchase")}
    users = {}
    with connect(config) as graph:
        for label, user in picks.items():
            lists, legs = {}, {}
            for name, text in statements.items():
                try:
                    lists[name] = run(graph, text, user_id=user, k=args.k)[0]  # a warm-up, and the answer
                except TransientError as e:  # the server's transaction memory limit: that statement fails
                    legs[name] = {"error": e.code, "message": e.message}
            times: dict[str, list[float]] = {name: [] for name in lists}
            for _ in range(args.repeats):  # alternated: drift on a shared host hits both alike
                for name in lists:
                    times[name].append(run(graph, statements[name], user_id=user, k=args.k)[1])
            for name in lists:
                hits, memory = profile(graph, statements[name], user_id=user, k=args.k)
                legs[name] = {"median_s": round(statistics.median(times[name]), 4), "db_hits": hits,
                              "peak_memory_bytes": memory, "runs_s": [round(t, 4) for t in times[name]]}
            row = {"user": user, "items_held": held[user], "legs": legs,
                   "same_list": len({tuple(v) for v in lists.values()}) == 1}
            assert row["same_list"], f"the statements disagree for user {user}: {lists}"
            s31, now = (legs.get(name, {}) for name in list(statements)[1:])
            if "median_s" in s31 and "median_s" in now:
                row.update(latency_s31_over_now=round(s31["median_s"] / now["median_s"], 2),
                           db_hits_s31_over_now=round(s31["db_hits"] / max(1, now["db_hits"]), 2),
                           memory_s31_over_now=round(s31["peak_memory_bytes"] / max(1, now["peak_memory_bytes"]), 2)
                           if s31["peak_memory_bytes"] and now["peak_memory_bytes"] else None)
            users[label] = row
            print(f"{label} (user {user}, {held[user]} items): " + ", ".join(
                f"{n}: " + (f"{leg['median_s']:.3f} s, {leg['db_hits']:,} db hits, "
                            f"{(leg['peak_memory_bytes'] or 0) / 2**20:.1f} MiB" if "error" not in leg
                            else leg["error"]) for n, leg in legs.items()), flush=True)
    path = write_result("graph_recall_copurchase", {"data": str(args.data), "k": args.k, "repeats": args.repeats,
                                                     "bulk_import": imported, "users": users})
    print(f"wrote {path}")
    if args.stop:
        ManagedNeo4j(config).stop()


if __name__ == "__main__":
    main()
