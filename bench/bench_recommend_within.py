"""Recommendations within attributes (graph recall, then the model's ranking) against the plain
top-k over the whole catalogue, in the same run.

``Recommender.recommend(user, k, within=[...])`` takes the items linked to every given attribute
(the artifact's ``item_attributes.npz``) and scores only those; ``recommend(user, k)`` scores every
item (the baseline; exact, as serving does below ``[serving] ann_min_items``). Same clustered random
64-dimensional embeddings as ``bench_serving_scale.py``; each item has one of ``--narrow`` narrow
attributes (a category: 1/1,000 of the catalogue each by default) and one of ``--broad`` broad ones
(a brand family: 1/10 each). Latency p50/p95 over ``--requests`` users, one request at a time.

    .venv/bin/python bench/bench_recommend_within.py --items 100000,1000000
Writes bench/results/recommend_within.json.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import latencies_ms, peak_rss_mb, write_result  # noqa: E402
from bench.bench_serving_scale import make_recommender  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--items", default="100000,1000000")
    ap.add_argument("--users", type=int, default=200)
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--narrow", type=int, default=1000)
    ap.add_argument("--broad", type=int, default=10)
    ap.add_argument("-k", type=int, default=10)
    args = ap.parse_args()
    rows = {}
    for n in [int(x) for x in args.items.split(",") if x]:
        rec = make_recommender(n, args.users)
        rng = np.random.default_rng(1)
        narrow, broad = rng.integers(0, args.narrow, n), rng.integers(0, args.broad, n)
        attrs = sp.csr_matrix((np.ones(2 * n, np.float32), (np.repeat(np.arange(n), 2),
                                                             np.stack([narrow, args.narrow + broad], 1).ravel())),
                              shape=(n, args.narrow + args.broad))
        rec.use_attributes(attrs.indptr, attrs.indices,
                           [f"cat:{c}" for c in range(args.narrow)] + [f"brand:{b}" for b in range(args.broad)])
        users = [rec.user_ids[r % len(rec.user_ids)] for r in range(args.requests)]
        cat, brand = f"cat:{min(7, args.narrow - 1)}", f"brand:{min(3, args.broad - 1)}"  # there at any size
        cases = {"whole catalogue (baseline)": (),
                 f"within one narrow attribute (~{n // args.narrow} items)": (cat,),
                 f"within one broad attribute (~{n // args.broad} items)": (brand,),
                 "within both (their intersection)": (cat, brand)}
        row = {}
        for name, within in cases.items():
            row[name] = {**latencies_ms(lambda u: rec.recommend(u, args.k, within=within), users),
                         "candidates": len(rec.items_within(list(within))) if within else n}
        base = row["whole catalogue (baseline)"]["p50_ms"]
        for r in row.values():
            r["x_baseline_p50"] = round(r["p50_ms"] / base, 3)
        rows[n] = row
        print(n, row, flush=True)
        del rec
    payload = {"rows": rows, "k": args.k, "dim": 64, "peak_rss_mib": round(peak_rss_mb()),
               "command": "python bench/bench_recommend_within.py " + " ".join(
                   f"--{a} {v}" if len(a) > 1 else f"-{a} {v}" for a, v in vars(args).items())}
    print(write_result("recommend_within", payload))


if __name__ == "__main__":
    main()
