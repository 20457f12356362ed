"""Write-back's clean-up of another model's leftovers: the rescan per batch before session 35
against the streamed scan and batches by element id now, alternated on the same database.

A write-back removes the embeddings and RECOMMENDED lists an older model left on nodes the new
model does not know. Before, each batch was a statement that scanned from the start for the next
``LIMIT`` leftovers, so the nodes already cleaned were scanned again by every later batch. Now one
streamed scan finds the nodes holding leftovers and they are cleared ``batch_size`` nodes a
transaction, by element id (``serving.writeback._clear_stale``, the product's own code).

The bench fills the benches' own Neo4j with ``--items`` items holding an 8-dimension embedding
and ``--users`` users holding a RECOMMENDED list of ``--k`` items; every ``--stale-every``-th node
is marked as another model's. Each leg restores the leftovers, then times one clean-up, the two
versions alternating for ``--repeats`` rounds, and checks that both leave none.

    .venv/bin/python bench/bench_writeback_stale.py [--items 500000] [--users 100000] [--stop]

Uses ``.kgrec/neo4j-bench`` (ports 7692/7479, wiped; never NEO4J_URI's server).
Writes ``bench/results/writeback_stale_<items>items_<users>users_every<n>.json``.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from contextlib import ExitStack
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import neo4j_config, write_result  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.lock import WRITEBACK_LOCK, graph_lock  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.schema import apply_schema, wipe  # noqa: E402
from serving.writeback import STALE_BATCH, _clear_stale  # noqa: E402

MODEL = "new-model"
OLD_LIMIT = 10_000  # the LIMIT the statements before session 35 were called with

# the statements before session 35, each called until it removed nothing
BEFORE = {
    "embeddings": """
CALL () {
  MATCH (i:Item) WHERE i.embedding IS NOT NULL AND coalesce(i.embedding_model, '') <> $model RETURN i AS n
  UNION
  MATCH (u:User) WHERE u.embedding IS NOT NULL AND coalesce(u.embedding_model, '') <> $model RETURN u AS n
}
WITH n LIMIT $limit
REMOVE n.embedding, n.embedding_model
RETURN count(*) AS written
""",
    "recommendations": """
MATCH (:User)-[r:RECOMMENDED]->()
WHERE coalesce(r.model, '') <> $model
WITH r LIMIT $limit
DELETE r
RETURN count(*) AS written
""",
}


def run_auto(graph, text: str, **params) -> None:
    """A bench set-up statement in an auto-commit transaction (``CALL ... IN TRANSACTIONS``)."""
    with graph.driver.session(database=graph.database) as session:
        session.run(text, params).consume()


def fill(graph, items: int, users: int, k: int) -> None:
    run_auto(graph, "UNWIND range(0, $n - 1) AS n CALL (n) { CREATE (:Item {id: 'i' + n, n: n}) } "
                    "IN TRANSACTIONS OF 50000 ROWS", n=items)
    run_auto(graph, "UNWIND range(0, $n - 1) AS n CALL (n) { CREATE (:User {id: 'u' + n, n: n}) } "
                    "IN TRANSACTIONS OF 50000 ROWS", n=users)


def restore(graph, items: int, users: int, k: int, every: int) -> None:
    """Every node's embedding and every user's list as the new model wrote them, except every
    ``every``-th node's, which another model wrote."""
    run_auto(graph, "MATCH (i:Item) CALL (i) { SET i.embedding = [0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8], "
                    "i.embedding_model = CASE WHEN i.n % $every = 0 THEN 'old-model' ELSE $model END } "
                    "IN TRANSACTIONS OF 50000 ROWS", every=every, model=MODEL)
    run_auto(graph, "MATCH (u:User) CALL (u) { OPTIONAL MATCH (u)-[r:RECOMMENDED]->() DELETE r } "
                    "IN TRANSACTIONS OF 20000 ROWS")
    run_auto(graph, "MATCH (u:User) CALL (u) { UNWIND range(1, $k) AS rank "
                    "MATCH (i:Item {id: 'i' + ((u.n * 7 + rank) % $items)}) "
                    "CREATE (u)-[:RECOMMENDED {rank: rank, model: CASE WHEN u.n % $every = 0 THEN 'old-model' "
                    "ELSE $model END}]->(i) } IN TRANSACTIONS OF 5000 ROWS",
             k=k, items=items, every=every, model=MODEL)


def leftovers(graph) -> dict[str, int]:
    rows = graph.driver.execute_query(
        "CALL () { MATCH (i:Item) WHERE i.embedding_model <> $model RETURN count(*) AS e } "
        "CALL () { MATCH ()-[r:RECOMMENDED]->() WHERE r.model <> $model RETURN count(*) AS r } RETURN e, r",
        model=MODEL, database_=graph.database).records[0]
    return {"embeddings": rows["e"], "recommendations": rows["r"]}


def clean_before(graph, what: str) -> None:
    while graph.driver.execute_query(BEFORE[what], model=MODEL, limit=OLD_LIMIT,
                                     database_=graph.database).records[0]["written"]:
        pass


def clean_now(graph, what: str, k: int, lease) -> None:
    # as write_back calls it
    _clear_stale(graph, what, lease, MODEL, STALE_BATCH if what == "embeddings" else max(1, STALE_BATCH // k))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=500_000)
    ap.add_argument("--users", type=int, default=100_000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--stale-every", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--heap", default="2g")
    ap.add_argument("--stop", action="store_true", help="stop the bench's server at the end")
    args = ap.parse_args()
    config = neo4j_config(args.heap)
    ManagedNeo4j(config).start()
    legs: dict[str, dict[str, list[float]]] = {w: {"before": [], "now": []} for w in BEFORE}
    with connect(config) as graph, ExitStack() as stack:
        wipe(graph)
        apply_schema(graph)
        lease = stack.enter_context(graph_lock(graph, WRITEBACK_LOCK))  # held by write_back around the clean-up
        t = time.perf_counter()
        fill(graph, args.items, args.users, args.k)
        print(f"{args.items:,} items, {args.users:,} users in {time.perf_counter() - t:.0f} s", flush=True)
        for round_ in range(args.repeats):
            for version in ("before", "now") if round_ % 2 == 0 else ("now", "before"):
                restore(graph, args.items, args.users, args.k, args.stale_every)
                stale = leftovers(graph)
                for what in BEFORE:
                    t = time.perf_counter()
                    clean_before(graph, what) if version == "before" else clean_now(graph, what, args.k, lease)
                    legs[what][version].append(time.perf_counter() - t)
                left = leftovers(graph)
                assert left == {"embeddings": 0, "recommendations": 0}, (version, left)
                print(f"round {round_ + 1} {version}: {stale} leftovers cleared in "
                      + ", ".join(f"{w} {legs[w][version][-1]:.2f} s" for w in BEFORE), flush=True)
    summary = {}
    for what, by in legs.items():
        before, now = statistics.median(by["before"]), statistics.median(by["now"])
        summary[what] = {"before_median_s": round(before, 3), "now_median_s": round(now, 3),
                         "before_over_now": round(before / now, 2),
                         "runs_s": {v: [round(x, 3) for x in xs] for v, xs in by.items()}}
        print(what, summary[what])
    out = write_result(f"writeback_stale_{args.items}items_{args.users}users_every{args.stale_every}", {
        "items": args.items, "users": args.users, "k": args.k, "stale_every": args.stale_every,
        "stale": stale, "old_limit": OLD_LIMIT, "repeats": args.repeats, "legs": summary})
    print(f"wrote {out}")
    if args.stop:
        ManagedNeo4j(config).stop()


if __name__ == "__main__":
    main()
