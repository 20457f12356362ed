"""The export's interaction read: one grouping of every interaction in the graph (the statement
before session 31, an eager aggregation) against a subquery per user (today's
``cypher/export/interactions.cypher``), alternated on the same database in the same run.

Loads a dataset (gowalla by default: 1,027,370 interactions) into the benches' own managed server
with the offline importer (``kg.bulk_import``), then for each statement: the query's peak memory in
Neo4j's heap as PROFILE reports it (``GlobalMemory``), the time to the first record and to the
last, each streamed 10,000 records at a time as the export reads them.

    .venv/bin/python bench/bench_export.py [--dataset gowalla] [--repeats 3] [--stop]

Uses ``.kgrec/neo4j-bench`` (ports 7692/7479, its database replaced; never NEO4J_URI's server).
Writes ``bench/results/export_interactions.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import cypher  # noqa: E402
from bench._common import neo4j_config, plan_operators, write_result  # noqa: E402
from kg.bulk_import import bulk_import  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.sources import load_source  # noqa: E402

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
FORMATS = {"gowalla": "lightgcn", "lastfm": "lastfm", "ml-100k": "ml100k"}

EAGER = """
MATCH (u:User)-[r:INTERACTED]->(i:Item)
RETURN u.id AS user, collect(i.id) AS items, collect(coalesce(r.kind, 'interact')) AS kinds,
       collect(coalesce(r.weight, 1.0)) AS weights, collect(coalesce(r.ts, 0)) AS ts,
       collect(coalesce(r.split, '')) AS splits
"""


def stream(graph, text: str) -> dict:
    """Read every record as ``Graph.stream`` does; seconds to the first and the last, events read."""
    t = time.perf_counter()
    first, events, users = None, 0, 0
    with graph.driver.session(database=graph.database, fetch_size=10_000) as session:
        for record in session.run(text):
            if first is None:
                first = time.perf_counter() - t
            events += len(record["items"])
            users += 1
    return {"first_record_s": round(first or 0.0, 3), "total_s": round(time.perf_counter() - t, 3),
            "events": events, "users": users}


def profile(graph, text: str) -> dict:
    """PROFILE's figures for the whole query: peak heap bytes (GlobalMemory) and the operators."""
    with graph.driver.session(database=graph.database, fetch_size=10_000) as session:
        result = session.run("PROFILE " + text)
        for _ in result:  # pulled, not discarded: Neo4j profiles only a result that was read
            pass
        summary = result.consume()
    plan = summary.profile or {}
    ops = [node.get("operatorType", "").split("@")[0] for node in plan_operators(plan)]
    return {"peak_memory_bytes": (plan.get("args") or {}).get("GlobalMemory"), "operators": ops}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", default="gowalla", choices=sorted(FORMATS))
    ap.add_argument("--datasets", type=Path, default=DATASETS)
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--stop", action="store_true", help="stop the bench server afterwards")
    args = ap.parse_args()

    config = neo4j_config(args.heap)
    records = load_source(FORMATS[args.dataset], args.datasets / args.dataset).records
    print(f"{args.dataset}: {len(records.interactions):,} interaction rows; bulk import …", flush=True)
    imported = bulk_import(records, config)
    statements = {"eager (one grouping)": EAGER, "per user (CALL subquery)": cypher.load("export/interactions")}
    runs: dict[str, list[dict]] = {name: [] for name in statements}
    with connect(config) as graph:
        for text in statements.values():  # warm the page cache and the plan cache
            stream(graph, text)
        plans = {name: profile(graph, text) for name, text in statements.items()}
        for _ in range(args.repeats):  # alternated, so drift on a shared host hits both alike
            for name, text in statements.items():
                runs[name].append(stream(graph, text))
                print(f"  {name}: {runs[name][-1]}", flush=True)
    legs = {}
    for name, rows in runs.items():
        legs[name] = {**plans[name], "first_record_s": statistics.median(r["first_record_s"] for r in rows),
                      "total_s": statistics.median(r["total_s"] for r in rows), "events": rows[0]["events"],
                      "users": rows[0]["users"], "runs": rows}
    eager, per_user = legs.values()
    assert eager["events"] == per_user["events"] and eager["users"] == per_user["users"], "the two read different data"
    ratios = {"peak_memory_eager_over_per_user": round(eager["peak_memory_bytes"] / max(1, per_user["peak_memory_bytes"]), 1),
              "total_time_per_user_over_eager": round(per_user["total_s"] / eager["total_s"], 2),
              "first_record_eager_over_per_user": round(eager["first_record_s"] / max(1e-3, per_user["first_record_s"]), 1)}
    for name, leg in legs.items():
        print(f"{name}: peak {leg['peak_memory_bytes'] / 2**20:.1f} MiB, first record {leg['first_record_s']} s, "
              f"all {leg['total_s']} s, {leg['events']:,} events of {leg['users']:,} users")
    print(ratios)
    path = write_result("export_interactions", {"dataset": args.dataset, "heap": args.heap, "repeats": args.repeats,
                                                 "bulk_import": imported, "legs": legs, "ratios": ratios})
    print(f"wrote {path}")
    if args.stop:
        ManagedNeo4j(config).stop()


if __name__ == "__main__":
    main()
