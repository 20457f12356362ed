"""Knowledge-graph triple ingest through kgrec's ingest path, with and without a relationship
index on ``RELATED.relation`` (the schema before session 30 had one), in the same run.

Each leg wipes the graph, applies the schema (the "with index" leg then creates the old index),
and loads the same generated triples with ingest's statement: ``--triples`` rows over ``--entities`` entities and
``--relations`` relation names, the entities created by the triples themselves, as a KGAT or
RecBole KG load does. Prints rows/s per leg and per batch, and the ratio.

    .venv/bin/python bench/bench_ingest_triples.py --triples 200000

Uses the benches' own managed server (``.kgrec/neo4j-bench``, ports 7692/7479, wiped; never
NEO4J_URI's server); ``--stop`` stops it afterwards.
"""
from __future__ import annotations

import argparse
import random
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import neo4j_config, write_result  # noqa: E402
from kg.connection import batches, connect  # noqa: E402
from kg.ingest import STATEMENTS  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.schema import apply_schema, wipe  # noqa: E402

OLD_INDEX = "CREATE INDEX related_relation IF NOT EXISTS FOR ()-[r:RELATED]-() ON (r.relation)"


def triples(n: int, entities: int, relations: int, seed: int = 0) -> list[dict]:
    """``n`` distinct random (head, relation, tail) rows."""
    rng = random.Random(seed)
    seen: set[tuple[int, int, int]] = set()
    while len(seen) < n:
        seen.add((rng.randrange(entities), rng.randrange(relations), rng.randrange(entities)))
    return [{"head": f"kg:{h}", "relation": f"r{r}", "tail": f"kg:{t}"} for h, r, t in sorted(seen, key=lambda x: rng.random())]


def load(graph, rows: list[dict], batch_size: int, with_index: bool, entities: int = 0,
         earlier_kg: int = 0) -> dict:
    """Wipe, apply the schema (then create the old index), load ``entities`` entity rows first when
    asked (a KG whose entity list loads before its triples), then ``rows`` ``batch_size`` at a time
    through ingest's own statements (``kg.ingest.STATEMENTS``; not ``ingest()``, whose lock applies
    today's schema and so drops the old index).

    ``earlier_kg`` first loads that many triples with a relation name each, has Neo4j sample the
    indexes, and wipes them: the statistics a long-lived database keeps from an earlier, varied
    knowledge graph (each relation name rare), which a reload then plans with."""
    wipe(graph)
    apply_schema(graph)
    run = lambda q: graph.driver.execute_query(q, database_=graph.database)  # noqa: E731
    if with_index:
        run(OLD_INDEX)
        run("CALL db.awaitIndexes(300)")
    if earlier_kg:
        varied = [{"head": f"old:{n}", "relation": f"rel{n}", "tail": f"old:{n + 1}"} for n in range(earlier_kg)]
        for batch in batches(varied, batch_size):
            graph.write(STATEMENTS["triples"], rows=batch)
        run("CALL db.resampleOutdatedIndexes()")
        time.sleep(5)  # sampling runs in the background
        wipe(graph)
    for batch in batches([{"id": f"kg:{e}", "type": "kg", "name": f"entity {e}", "placeholder": False}
                          for e in range(entities)], batch_size):
        graph.write(STATEMENTS["entities"], rows=batch)
    batch_s: list[float] = []
    t0 = time.perf_counter()
    for i in range(0, len(rows), batch_size):
        t = time.perf_counter()
        graph.write(STATEMENTS["triples"], rows=rows[i:i + batch_size])
        batch_s.append(round(time.perf_counter() - t, 3))
        print(f"  {'with' if with_index else 'without'} index: rows {i + batch_size:>8,} in {batch_s[-1]:.2f} s",
              flush=True)
    total = time.perf_counter() - t0
    written = run("MATCH ()-[r:RELATED]->() RETURN count(r) AS n").records[0]["n"]
    return {"seconds": round(total, 2), "rows_per_s": round(len(rows) / total, 1), "relationships": written,
            "batch_seconds": batch_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--triples", type=int, default=200_000)
    ap.add_argument("--entities", type=int, default=20_000)
    ap.add_argument("--relations", type=int, default=10)
    ap.add_argument("--batch-size", type=int, default=10_000)
    ap.add_argument("--earlier-kg", type=int, default=0,
                    help="first load and wipe this many triples of distinct relation names (index statistics "
                         "of an earlier load)")
    ap.add_argument("--entities-first", action="store_true",
                    help="load the entities before the triples (as an entity list then a KG file would)")
    ap.add_argument("--heap", default="1g")
    ap.add_argument("--out", default="ingest_triples")
    ap.add_argument("--stop", action="store_true", help="stop the bench server afterwards")
    args = ap.parse_args()
    cfg = neo4j_config(args.heap)
    server = ManagedNeo4j(cfg)
    server.start()
    rows = triples(args.triples, args.entities, args.relations)
    try:
        with connect(cfg) as graph:
            load(graph, rows[:args.batch_size], args.batch_size, with_index=False)  # warm-up: a cold server is slow
            first = args.entities if args.entities_first else 0
            now = load(graph, rows, args.batch_size, with_index=False, entities=first,  # the schema as it is
                       earlier_kg=args.earlier_kg)
            before = load(graph, rows, args.batch_size, with_index=True, entities=first,  # the index it had
                          earlier_kg=args.earlier_kg)
            wipe(graph)
            apply_schema(graph)  # drops the old index again
    finally:
        if args.stop:
            server.stop()
    assert now["relationships"] == before["relationships"] == len(rows)
    ratio = round(now["rows_per_s"] / before["rows_per_s"], 1)
    print(f"{len(rows):,} triples{' (entities first)' if args.entities_first else ''}: {now['rows_per_s']:,.0f} rows/s without the index, "
          f"{before['rows_per_s']:,.0f} with it ({ratio}x)")
    path = write_result(args.out, {"args": vars(args), "without_index": now, "with_related_relation_index": before,
                                   "speedup": ratio})
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
