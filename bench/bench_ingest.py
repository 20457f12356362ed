"""Full-file reads of each shared dataset through the kg.sources readers (governance included).

Reports read/loaded/quarantined/deduplicated per file, canonical row counts next to the counts the
datasets README states, and rows/s of reading. Writes ``bench/results/ingest_sources.json``.

Usage: ``python bench/bench_ingest.py [--datasets DIR] [--out PATH]``
"""
from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

from _common import results_dir
from kg.quality import quality_summary
from kg.sources import load_source

ROOT = Path(__file__).resolve().parents[1]

# Counts stated in ../shared/datasets/README.md
EXPECTED = {
    "gowalla": ("lightgcn", {"users": 29858, "items": 40981, "interactions": 1027370}),
    "lastfm": ("lastfm", {"users": 1892, "items": 17632, "interactions": 92834, "friends": 25434,
                          "triples": 15518, "item_entities": 3846, "kg_entities": 9366, "tags": 11946}),
    "ml-100k": ("ml100k", {"users": 943, "items": 1682, "interactions": 100000}),
}


def bench_one(name: str, fmt: str, path: Path) -> dict:
    """Read one dataset and compare with the README counts."""
    t0 = time.perf_counter()
    res = load_source(fmt, path)
    seconds = time.perf_counter() - t0
    totals = res.totals()
    counts = res.records.counts()
    measured = dict(counts)
    measured["kg_entities"] = sum(1 for e in res.records.entities if e["type"] == "kg")
    measured["tags"] = sum(1 for e in res.records.entities if e["type"] == "tag")
    expected = EXPECTED[name][1]
    ratings = {}
    if name == "ml-100k":
        for r in res.records.interactions:
            ratings[int(r["weight"])] = ratings.get(int(r["weight"]), 0) + 1
    q = quality_summary(res.records)
    return {
        "format": fmt, "seconds": round(seconds, 3), "rows_read": totals["read"],
        "rows_per_s": round(totals["read"] / seconds) if seconds else None,
        "totals": totals, "reconciles": res.reconciles(), "files": res.report, "records": counts,
        "created": res.created, "truncated": len(res.truncated),
        "expected_readme": expected,
        "matches_readme": {k: measured.get(k) == v for k, v in expected.items()},
        "measured": {k: measured.get(k) for k in expected},
        **({"rating_counts": dict(sorted(ratings.items()))} if ratings else {}),
        "quality": {k: q[k] for k in ("density", "cold_users", "cold_items", "text_coverage")},
        "quarantine_reasons": sorted({q["reason"].split(" '")[0] for q in res.quarantine})[:20],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--datasets", type=Path, default=ROOT.parent / "shared" / "datasets")
    parser.add_argument("--out", type=Path, default=None, help="default: ingest_sources.json under bench/results "
                        "(or $KGREC_BENCH_RESULTS)")
    args = parser.parse_args(argv)
    args.out = args.out or results_dir() / "ingest_sources.json"
    results = {}
    for name, (fmt, _) in EXPECTED.items():
        path = args.datasets / name
        if not path.is_dir():
            results[name] = {"skipped": f"{path} absent"}
            continue
        results[name] = bench_one(name, fmt, path)
        r = results[name]
        print(f"{name:8s} {fmt:9s} read={r['rows_read']:>9,d} loaded={r['totals']['loaded']:>9,d} "
              f"quarantined={r['totals']['quarantined']:>6,d} dedup={r['totals']['deduplicated']:>6,d} "
              f"{r['rows_per_s']:>8,d} rows/s  README match: {all(r['matches_readme'].values())}")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"host": platform.node(), "python": platform.python_version(),
                                    "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "datasets": results}, indent=2, sort_keys=True))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
