"""Ingest and export throughput against the real Neo4j server.

In one run: generated interactions written through ``UNWIND`` batches versus one event per
transaction (the baseline, on a sample), then a full export snapshot (time and peak RSS), then the
same number of new events for the now known users (the MERGE path an incremental load takes),
then the bulk import into a fresh database.

    .venv/bin/python bench/bench_ingest_write.py --interactions 1000000

Uses the test server (``.kgrec/neo4j-test-7688``, wiped) unless NEO4J_URI is set.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import peak_rss_mb, write_result  # noqa: E402
from kg.connection import connect  # noqa: E402
from kg.export import export_snapshot  # noqa: E402
from kg.ingest import _normalise_interactions, ingest  # noqa: E402
from kg.neo4j_server import ManagedNeo4j  # noqa: E402
from kg.records import GraphRecords  # noqa: E402
from kg.schema import apply_schema, wipe  # noqa: E402
from kg.synthetic import SyntheticSpec, generate  # noqa: E402
from kgrec.config import ExportConfig, IngestConfig  # noqa: E402
from tests.conftest import test_neo4j_config  # noqa: E402


def process_cpu_s(pid: int | None) -> float | None:
    """User + system CPU seconds of process ``pid`` so far (None when unknown)."""
    if pid is None:
        return None
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--interactions", type=int, default=1_000_000)
    p.add_argument("--batch-size", type=int, default=10_000)
    p.add_argument("--single-sample", type=int, default=2000, help="events written one per transaction")
    p.add_argument("--export-only", action="store_true",
                   help="only time an export of the graph already in the test server (writes ingest_export.json)")
    args = p.parse_args()
    if args.export_only:
        cfg = test_neo4j_config()
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

    cfg = test_neo4j_config()
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
    with connect(cfg) as g:
        wipe(g)
        apply_schema(g)
        t = time.perf_counter()
        ingest(g, GraphRecords(users=records.users, items=records.items, entities=records.entities,
                               item_entities=records.item_entities), IngestConfig(batch_size=args.batch_size), progress=False)
        nodes_s = time.perf_counter() - t

        sample = [dict(e, ts=e["ts"] + 10**9) for e in events[: args.single_sample]]
        t = time.perf_counter()
        for e in sample:
            g.write("ingest/create_interactions_one", **e)
        single_rate = len(sample) / (time.perf_counter() - t)

        t, server0, client0 = time.perf_counter(), process_cpu_s(server_pid), time.process_time()
        report = ingest(g, GraphRecords(interactions=records.interactions),
                        IngestConfig(batch_size=args.batch_size), progress=True)
        batch_s = time.perf_counter() - t
        client_cpu = time.process_time() - client0
        server_cpu = None if server0 is None else process_cpu_s(server_pid) - server0
        batch_rate = report["relationships_created"] / batch_s

        t = time.perf_counter()
        again = ingest(g, GraphRecords(interactions=records.interactions),
                       IngestConfig(batch_size=args.batch_size), progress=False)
        rerun_s = time.perf_counter() - t

        rss0 = peak_rss_mb()
        t = time.perf_counter()
        snap = export_snapshot(g, ExportConfig(out_dir=Path(".kgrec/bench-snapshots")), "bench")
        export_s = time.perf_counter() - t
        later = GraphRecords(interactions=[dict(e, ts=e["ts"] + 2 * 10**9) for e in records.interactions])
        t = time.perf_counter()
        known = ingest(g, later, IngestConfig(batch_size=args.batch_size), progress=False)
        known_s = time.perf_counter() - t
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
        "unwind_batches": {"seconds": round(batch_s, 2), "relationships_per_s": round(batch_rate),
                           # where the time goes: CPU seconds of the Neo4j JVM and of this client
                           "server_cpu_s": None if server_cpu is None else round(server_cpu, 1),
                           "client_cpu_s": round(client_cpu, 1)},
        "one_per_transaction": {"sample": len(sample), "relationships_per_s": round(single_rate)},
        "ratio_unwind_vs_single": round(batch_rate / single_rate, 1),
        "known_users_merge_path": {"seconds": round(known_s, 2),
                                   "relationships_created": known["relationships_created"],
                                   "relationships_per_s": round(known["relationships_created"] / known_s)},
        "rerun_idempotent": {"seconds": round(rerun_s, 2), "relationships_created": again["relationships_created"]},
        "export": {"seconds": round(export_s, 2), "peak_rss_mb_before": round(rss0), "peak_rss_mb_after": round(peak_rss_mb()),
                   "snapshot": str(snap)},
        "bulk_import": bulk,
        "ratio_bulk_vs_unwind": round(bulk["relationships_per_s_total"] / batch_rate, 1) if bulk else None,
        "targets": {"relationships_per_s": 50_000, "export_seconds_1M": 30},
    }
    print(result)
    print(write_result("ingest_write", result))


if __name__ == "__main__":
    main()
