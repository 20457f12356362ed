"""Ingest and export throughput against the real Neo4j server.

In one run: generated interactions written through ``UNWIND`` batches, once per writer count in
``--writers`` (the graph is wiped before each), versus one event per transaction (the baseline, on
a sample), then a full export snapshot (time and peak RSS), then the same number of new events for
the now known users (the MERGE path an incremental load takes), then the bulk import into a fresh
database.

    .venv/bin/python bench/bench_ingest_write.py --interactions 1000000 --writers 1,2,4

Uses its own managed server (``.kgrec/neo4j-bench``, ports 7692/7479, wiped; ``--heap``, default the
product's 2 GB heap and page cache; never NEO4J_URI's server). It keeps running for ``--export-only``;
``--stop`` stops it.
"""
from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import neo4j_config, peak_rss_mb, write_result  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.export import export_snapshot  # noqa: E402
from kg.ingest import _normalise_interactions, ingest  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.records import GraphRecords  # noqa: E402
from kg.schema import apply_schema, wipe  # noqa: E402
from kg.synthetic import SyntheticSpec, generate  # noqa: E402
from kgrec.config import ExportConfig, IngestConfig, Neo4jConfig  # noqa: E402


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None when unknown)."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class RetryCounter(logging.Handler):
    """Counts the driver's "will be retried" warnings (deadlocks and other transient errors)."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if "will be retried" in record.getMessage():
            self.count += 1


def bench_neo4j_config(heap: str) -> Neo4jConfig:
    """The bench's own managed server (ports 7692/7479; never NEO4J_URI's, which it would wipe) with
    ``heap`` for both the heap and the page cache. A running bench server keeps the heap it was started with."""
    return neo4j_config(heap)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--writers", default="1,2",
                   help="comma-separated concurrent writer counts to compare; the last one's graph is kept")
    p.add_argument("--single-sample", type=int, default=2000, help="events written one per transaction")
    p.add_argument("--export-only", action="store_true",
                   help="only time an export of the graph already in the bench server (writes ingest_export.json)")
    p.add_argument("--heap", default=Neo4jConfig().heap,
                   help="heap and page cache of the bench's own server (default: the product default)")
    p.add_argument("--stop", action="store_true", help="stop the bench's own server and exit")
    args = p.parse_args()
    cfg = bench_neo4j_config(args.heap)
    if args.stop:
        if cfg.managed:
            ManagedNeo4j(cfg).stop()
        return
    if args.export_only:
        with connect(cfg) as g:
            from kg.ingest import graph_counts

            counts = graph_counts(g)
            t = time.perf_counter()
            snap = export_snapshot(g, ExportConfig(out_dir=Path(".kgrec/bench-snapshots")), "bench")
            export_s = time.perf_counter() - t
        result = {"graph": counts, "export_seconds": round(export_s, 2), "peak_rss_mb": round(peak_rss_mb()),
                  "snapshot": str(snap), "target_seconds_1M": 30}
        print(result)
        print(write_result("ingest_export", result))
        return

    server_pid = None
    if cfg.managed:
        ManagedNeo4j(cfg).start()
        server_pid = ManagedNeo4j(cfg).pid()
    per_user = 25
    users = max(100, args.interactions // per_user)
    records = generate(SyntheticSpec(num_users=users, num_items=max(100, users // 2), num_communities=8,
                                     interactions_per_user=per_user, num_queries=0))
    events = _normalise_interactions(records.interactions)
    print(f"generated {len(events)} interactions, {users} users")
    writer_counts = [int(w) for w in args.writers.split(",")]
    nodes = GraphRecords(users=records.users, items=records.items, entities=records.entities,
                         item_entities=records.item_entities)
    retries = RetryCounter()
    logging.getLogger("neo4j").addHandler(retries)
    with connect(cfg) as g:
        by_writers: dict[int, dict] = {}
        for n, writers in enumerate(writer_counts):
            wipe(g)
            apply_schema(g)
            t = time.perf_counter()
            ingest(g, nodes, IngestConfig(batch_size=args.batch_size), progress=False)
            nodes_s = time.perf_counter() - t
            if n == 0:  # the one-per-transaction baseline, on new timestamps
                sample = [dict(e, ts=e["ts"] + 10**9) for e in events[: args.single_sample]]
                t = time.perf_counter()
                for e in sample:
                    g.write("ingest/create_interactions_one", **e)
                single_rate = len(sample) / (time.perf_counter() - t)

            ingest_cfg = IngestConfig(batch_size=args.batch_size, writers=writers)
            t, server0, client0 = time.perf_counter(), process_cpu_s(server_pid), time.process_time()
            retries.count = 0
            report = ingest(g, GraphRecords(interactions=records.interactions), ingest_cfg, progress=True)
            batch_s = time.perf_counter() - t
            client_cpu = time.process_time() - client0
            server_cpu = None if server0 is None else process_cpu_s(server_pid) - server0
            by_writers[writers] = {
                "seconds": round(batch_s, 2), "relationships_created": report["relationships_created"],
                "relationships_per_s": round(report["relationships_created"] / batch_s),
                # where the time goes: CPU seconds of the Neo4j JVM and of this client
                "server_cpu_s": None if server_cpu is None else round(server_cpu, 1),
                "client_cpu_s": round(client_cpu, 1), "transient_retries": retries.count}
            print(f"{writers} writer(s): {by_writers[writers]}")
        best = max(by_writers, key=lambda w: by_writers[w]["relationships_per_s"])
        batch_rate = by_writers[best]["relationships_per_s"]

        t, retries.count = time.perf_counter(), 0
        again = ingest(g, GraphRecords(interactions=records.interactions), ingest_cfg, progress=False)
        rerun_s, rerun_retries = time.perf_counter() - t, retries.count

        rss0 = peak_rss_mb()
        t = time.perf_counter()
        snap = export_snapshot(g, ExportConfig(out_dir=Path(".kgrec/bench-snapshots")), "bench")
        export_s = time.perf_counter() - t
        later = GraphRecords(interactions=[dict(e, ts=e["ts"] + 2 * 10**9) for e in records.interactions])
        t, retries.count = time.perf_counter(), 0
        known = ingest(g, later, ingest_cfg, progress=False)
        known_s, known_retries = time.perf_counter() - t, retries.count
    bulk = None
    if cfg.managed:  # the offline importer needs the local managed server
        from kg.bulk_import import bulk_import

        t = time.perf_counter()
        bulk = bulk_import(records, cfg)
        bulk_s = time.perf_counter() - t
        bulk.update({"total_seconds_incl_restart": round(bulk_s, 2),
                     "relationships_per_s_import_only": round(len(events) / bulk["import_seconds"]),
                     "relationships_per_s_total": round(len(events) / bulk_s)})
    result = {
        "interactions": len(events), "batch_size": args.batch_size, "nodes_seconds": round(nodes_s, 2),
        "unwind_batches_by_writers": by_writers,
        "best_writers": best,
        "unwind_batches": by_writers[best],
        "ratio_best_vs_one_writer": (round(batch_rate / by_writers[1]["relationships_per_s"], 2)
                                     if 1 in by_writers else None),
        "one_per_transaction": {"sample": len(sample), "relationships_per_s": round(single_rate)},
        "ratio_unwind_vs_single": round(batch_rate / single_rate, 1),
        "known_users_merge_path": {"writers": writer_counts[-1], "seconds": round(known_s, 2),
                                   "relationships_created": known["relationships_created"],
                                   "relationships_per_s": round(known["relationships_created"] / known_s),
                                   "transient_retries": known_retries},
        "rerun_idempotent": {"seconds": round(rerun_s, 2), "relationships_created": again["relationships_created"],
                             "transient_retries": rerun_retries},
        "export": {"seconds": round(export_s, 2), "peak_rss_mb_before": round(rss0), "peak_rss_mb_after": round(peak_rss_mb()),
                   "snapshot": str(snap)},
        "bulk_import": bulk,
        "ratio_bulk_vs_unwind": round(bulk["relationships_per_s_total"] / batch_rate, 1) if bulk else None,
        "targets": {"relationships_per_s": 50_000, "export_seconds_1M": 30},
        "server": {"heap": cfg.heap, "pagecache": cfg.pagecache, "managed": cfg.managed},
    }
    print(result)
    print(write_result("ingest_write", result))


if __name__ == "__main__":
    main()
