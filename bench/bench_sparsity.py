"""Sparsity study (issue #6): does fusing text help more as the training interactions thin out?

For each ``--fractions`` value, each user keeps that share of their training interactions
(``bench_ablation.py --train-fraction``; the hold-outs, slices and protocol are the ablation's). Each
model first gets its own L2 weight: every ``--weight-decays`` value is run on the first seed and the
best by validation NDCG@20 is kept (test figures play no part); while the best is the largest weight
tried, the next one up (x3, then x10/3) is tried too. Then every other ``--seeds`` value runs at
that weight. Rows run as ``bench_ablation.py`` subprocesses, ``--jobs`` at a time, each
with one torch thread.

Usage::

    .venv/bin/python bench/bench_sparsity.py --dataset ml-100k [--fractions 0.1,0.25,0.5] [--jobs 2]

Writes ``bench/results/sparsity_<dataset>.json`` (every run, with the command that reproduces it)
and prints warm and full-test Recall@20 / NDCG@20, means over the seeds.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import results_dir, write_result  # noqa: E402

ABLATION = Path(__file__).resolve().parent / "bench_ablation.py"
MODELS = ("lightgcn (id only)", "fused")


def run_row(dataset: str, row: str, fraction: float, weight_decay: float, seed: int, extra: list[str]) -> dict[str, Any]:
    """One ``bench_ablation.py`` row; its result (slices, validation score) and the command that made it."""
    name = f"_sparsity_{uuid.uuid4().hex[:8]}"
    args = ["--dataset", dataset, "--rows", row, "--train-fraction", str(fraction), "--weight-decay",
            str(weight_decay), "--seed", str(seed), *extra]
    proc = subprocess.run([sys.executable, str(ABLATION), *args, "--out", name], capture_output=True, text=True)
    out = results_dir() / f"{name}.json"
    if proc.returncode != 0 or not out.is_file():  # a skipped dataset says so on stdout, with exit 0
        raise RuntimeError(f"bench_ablation.py {' '.join(args)} wrote no result:\n"
                           f"{(proc.stdout + proc.stderr)[-2000:]}")
    payload = json.loads(out.read_text())
    out.unlink()
    result = payload["rows"][row]
    keep = ("warm", "test", "cold_only", "new_users", "valid_ndcg@20", "best_epoch", "epochs_run", "train_s")
    return {"row": row, "fraction": fraction, "weight_decay": weight_decay, "seed": seed,
            **{k: result[k] for k in keep}, "train_interactions": payload["data"]["interactions"]["train"],
            "command": "python bench/bench_ablation.py " + " ".join(f'"{a}"' if " " in a else a for a in args)}


def next_weight(w: float) -> float:
    """One step up the 1, 3, 10, 30 ladder: 1e-3 -> 3e-3 -> 1e-2."""
    return float(f"{w * (3 if f'{w:.0e}'[0] == '1' else 10 / 3):.0e}")


def summarise(runs: list[dict[str, Any]], fractions: list[float]) -> list[dict[str, Any]]:
    """Per fraction and model: the chosen weight and the seed means; per fraction: fused's paired wins."""
    out = []
    for f in fractions:
        by_model = {m: sorted((r for r in runs if r["fraction"] == f and r["row"] == m and r.get("chosen")),
                              key=lambda r: r["seed"]) for m in MODELS}
        for m, rs in by_model.items():
            if not rs:
                continue
            line = {"fraction": f, "row": m, "weight_decay": rs[0]["weight_decay"], "seeds": len(rs),
                    "train_interactions": rs[0]["train_interactions"]}
            for s in ("warm", "test"):
                for k in ("recall@20", "ndcg@20"):
                    line[f"{s}_{k}"] = round(float(np.mean([r[s][k] for r in rs])), 4)
            out.append(line)
        base, fused = by_model[MODELS[0]], by_model[MODELS[1]]
        if base and len(base) == len(fused):
            diff = np.array([b["warm"]["recall@20"] - a["warm"]["recall@20"] for a, b in zip(base, fused)])
            out[-1]["fused_ahead_warm_recall"] = f"{int((diff > 0).sum())} of {len(diff)}"
            out[-1]["warm_recall_diff_mean_sd"] = [round(float(diff.mean()), 4), round(float(diff.std(ddof=1)), 4)
                                                   if len(diff) > 1 else 0.0]
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=("ml-100k", "lastfm"), required=True)
    ap.add_argument("--fractions", default="0.1,0.25,0.5")
    ap.add_argument("--weight-decays", default="1e-4,3e-4,1e-3,3e-3,1e-2")
    ap.add_argument("--seeds", default="2020,2021,2022,2023,2024")
    ap.add_argument("--patience", type=int, default=30)
    ap.add_argument("--epochs", type=int, default=200, help="epoch cap of each row")
    ap.add_argument("--budget-s", type=float, default=1200.0,
                    help="time limit of each row; a row that reaches it is flagged (raise it rather than compare such rows)")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--out", default=None, help="result name (default sparsity_<dataset>)")
    args = ap.parse_args(argv)
    fractions = [float(f) for f in args.fractions.split(",")]
    weights = [float(w) for w in args.weight_decays.split(",")]
    seeds = [int(s) for s in args.seeds.split(",")]
    extra = ["--patience", str(args.patience), "--epochs", str(args.epochs), "--budget-s", str(args.budget_s)]
    t0 = time.perf_counter()

    def run_one(job: tuple[str, float, float, int]) -> dict[str, Any]:
        r = run_row(args.dataset, *job, extra)
        r["stopped_by"] = ("time budget" if r["train_s"] >= args.budget_s else
                           "epoch cap" if r["epochs_run"] >= args.epochs else "patience")
        print(f"f={r['fraction']} {r['row']} wd={r['weight_decay']:g} seed={r['seed']}: valid "
              f"{r['valid_ndcg@20']:.4f}, warm {r['warm']['recall@20']:.4f} / {r['warm']['ndcg@20']:.4f} "
              f"({r['train_s']:.0f} s, {r['epochs_run']} epochs, stopped by {r['stopped_by']})", flush=True)
        return r

    def run_all(jobs: list[tuple[str, float, float, int]]) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(args.jobs) as pool:
            return list(pool.map(run_one, jobs))

    runs = run_all([(m, f, w, seeds[0]) for f in fractions for m in MODELS for w in weights])

    def tried(f: float, m: str) -> list[dict[str, Any]]:
        return [r for r in runs if r["fraction"] == f and r["row"] == m]

    def best(f: float, m: str) -> dict[str, Any]:
        return max(tried(f, m), key=lambda r: r["valid_ndcg@20"])

    while True:  # a best weight at the top of what was tried: try the next one up
        edge = [(f, m) for f in fractions for m in MODELS
                if best(f, m)["weight_decay"] == max(r["weight_decay"] for r in tried(f, m))]
        if not edge:
            break
        runs += run_all([(m, f, next_weight(best(f, m)["weight_decay"]), seeds[0]) for f, m in edge])
    for f in fractions:
        for m in MODELS:
            best(f, m)["chosen"] = True
    more = run_all([(m, f, best(f, m)["weight_decay"], s) for f in fractions for m in MODELS for s in seeds[1:]])
    for r in more:
        r["chosen"] = True
    runs += more
    summary = summarise(runs, fractions)
    payload = {"dataset": args.dataset, "protocol": {"fractions": fractions, "weight_decays": weights, "seeds": seeds,
                                                     "patience": args.patience, "epochs": args.epochs,
                                                     "budget_s": args.budget_s,
                                                     "selection": "each model's weight by valid ndcg@20 on the first seed"},
               "summary": summary, "runs": runs, "total_s": round(time.perf_counter() - t0, 1),
               "command": "python bench/bench_sparsity.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = write_result(args.out or f"sparsity_{args.dataset}", payload)
    print("| fraction | model | L2 | warm R@20 / N@20 | test R@20 / N@20 | fused ahead (warm R@20) |")
    print("|---|---|---|---|---|---|")
    for s in summary:
        print(f"| {s['fraction']} | {s['row']} | {s['weight_decay']:g} | {s['warm_recall@20']:.4f} / "
              f"{s['warm_ndcg@20']:.4f} | {s['test_recall@20']:.4f} / {s['test_ndcg@20']:.4f} | "
              f"{s.get('fused_ahead_warm_recall', '')} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
