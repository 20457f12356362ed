"""Our LightGCN on the LightGCN Gowalla split under a time budget, optionally beside the PyG recipe.

Usage: python bench/bench_gnn_lightgcn.py [--budget-s 600] [--baseline] [--batch-size 16384] [--lr 5e-3]
Trains with gnn.train.train (evaluating on test each epoch: the split has no validation set), records
per-epoch train seconds and Recall/NDCG@20, then (with --baseline) runs
../shared/baselines/pyg_lightgcn_recipe.py (or --baseline-recipe) for --baseline-epochs epochs or
--baseline-budget-s seconds in the same run and reports the epoch-time ratio and the ratio of training
time to the recipe's best Recall@20 ("time_to_baseline_quality"). Peak memory is recorded for both:
torch.cuda.max_memory_allocated on CUDA (the recipe runs in a child interpreter that prints its own),
peak RSS of the process on either device. Writes bench/results/gnn_lightgcn_<dataset>.json (--out),
after every evaluation ("complete": false until training has ended).
"""
from __future__ import annotations

import argparse
import json
import logging
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, results_dir  # noqa: E402
from bench_gnn_gfcf import device_info  # noqa: E402


# runs the recipe in a child interpreter and then prints that interpreter's peak CUDA memory, also when
# it is stopped by SIGTERM at the end of its time budget
_RECIPE_WITH_PEAK = ("import json, os, runpy, signal, sys, torch\n"
                     "def peak(*_):\n"
                     "    print(json.dumps({'peak_gpu_mib': round(torch.cuda.max_memory_allocated() / 2**20, 1) "
                     "if torch.cuda.is_available() else None}), flush=True)\n"
                     "    os._exit(0)\n"
                     "signal.signal(signal.SIGTERM, peak)\n"
                     "sys.argv = sys.argv[1:]\n"
                     "runpy.run_path(sys.argv[0], run_name='__main__')\n"
                     "peak()\n")


def run_baseline(recipe: str, data: str, epochs: int, budget_s: float,
                 eval_every: int = 1) -> tuple[list[dict], dict]:
    """Run the PyG recipe (3 layers, as ours) in a child interpreter for ``epochs`` epochs or
    ``budget_s`` seconds of wall time (start-up and its evaluations, every ``eval_every`` epochs,
    included), whichever ends first; return its per-epoch JSON lines and peak memory.

    Raises:
        RuntimeError: the recipe failed, or finished no epoch within the budget.
    """
    with tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen([sys.executable, "-c", _RECIPE_WITH_PEAK, str(recipe), data, str(epochs), "3",
                                 str(eval_every)],
                                stdout=subprocess.PIPE, stderr=err, text=True)
        timer = threading.Timer(budget_s, proc.terminate)
        timer.start()
        try:
            lines = [json.loads(line) for line in proc.stdout if line.startswith("{")]  # type: ignore[union-attr]
            rc = proc.wait()
        finally:
            timer.cancel()
        err.seek(0)
        if rc != 0 or len(lines) < 2:
            raise RuntimeError(f"baseline failed (exit {rc}, {len(lines) - 1} epochs): {err.read()[-2000:]}")
    peak = {"gpu_mib": lines[-1]["peak_gpu_mib"], "rss_mib": round(peak_rss_mb(children=True), 1)}
    return lines[:-1], peak


def time_to_quality(ours: list[dict], base: list[dict], target: float | None = None) -> dict:
    """Training seconds each side needs to first reach Recall@20 ``target`` (default: the
    baseline's best, a low bar when its budget is short).

    Both sides count training time only (each evaluates with its own code, at its own interval, so
    each is rounded up to its next evaluation). ``ratio`` is baseline / ours, None when either never
    got there.
    """
    def first(epochs: list[dict], key: str, target: float) -> float | None:
        t = 0.0
        for e in epochs:
            t += e["train_s"]
            if (e.get(key) or 0.0) >= target:
                return round(t, 2)
        return None

    if target is None:  # the baseline's best; none when it never evaluated (every epoch would "reach" 0)
        scores = [e["recall20"] for e in base if e.get("recall20") is not None]
        if not scores:
            return {"recall@20": None, "baseline_train_s": None, "ours_train_s": None, "ratio_baseline_over_ours": None}
        target = max(scores)
    t_base, t_ours = first(base, "recall20", target), first(ours, "recall@20", target)
    return {"recall@20": target, "baseline_train_s": t_base, "ours_train_s": t_ours,
            "ratio_baseline_over_ours": round(t_base / t_ours, 2) if t_base and t_ours else None}


def main() -> None:
    from gnn.evaluate import to_csr
    from gnn.train import checkpoint_dir, resolve_device, seed_checkpoint, train
    from kg.sources.lightgcn import snapshot_from_lightgcn
    from kgrec.config import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "gowalla"))
    ap.add_argument("--budget-s", type=float, default=600.0)
    ap.add_argument("--epochs", type=int, default=10000,
                    help="the last epoch, counted across a --continue-from chain; reaching it ends the run and "
                         "deletes its checkpoint, so the budget is the usual stop")
    ap.add_argument("--batch-size", type=int, default=16384)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--weight-decay", type=float, default=1e-4, help="L2 on the batch's ego embeddings")
    ap.add_argument("--negatives", default="uniform")
    ap.add_argument("--positive-sampling", default="interaction", choices=["interaction", "user"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--swa-start", type=int, default=0,
                    help="evaluate and publish the mean of the weights from this epoch on (0 = off)")
    ap.add_argument("--target-recall", type=float, default=0.18, help="report the wall time to reach this Recall@20")
    ap.add_argument("--baseline-eval-every", type=int, default=1,
                    help="the baseline evaluates every this many epochs (its evaluations count against its budget)")
    ap.add_argument("--models-dir", default=None,
                    help="keep checkpoints here so a killed or budget-limited run resumes (default: a temp dir)")
    ap.add_argument("--continue-from", metavar="CKPT_DIR",
                    help="start from another run's checkpoint directory (<models-dir>/.checkpoints/lightgcn-*): "
                         "its weights, Adam moments and epochs, under this run's batch size and lr; "
                         "needs --models-dir, and is ignored once this run has a checkpoint of its own")
    ap.add_argument("--baseline", action="store_true",
                    help="also run the PyG recipe (about 330 s/epoch on 2 CPU cores)")
    ap.add_argument("--baseline-epochs", type=int, default=1)
    ap.add_argument("--baseline-budget-s", type=float, default=3600.0,
                    help="stop the recipe after this many seconds (start-up included), keeping its epochs so far")
    ap.add_argument("--baseline-recipe", default=str(ROOT.parent / "shared" / "baselines" / "pyg_lightgcn_recipe.py"),
                    help="the PyG recipe script (a copy travels to a device machine, where ../shared does not)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    if args.continue_from and not args.models_dir:
        ap.error("--continue-from needs --models-dir (the continued run's checkpoints live there)")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    snap = snapshot_from_lightgcn(args.data)
    cfg = TrainConfig(model="lightgcn", embedding_dim=args.dim, num_layers=args.layers, lr=args.lr,
                      weight_decay=args.weight_decay, batch_size=args.batch_size, epochs=args.epochs,
                      eval_every=args.eval_every, patience=1000, swa_start=args.swa_start,
                      negative_sampling=args.negatives,
                      positive_sampling=args.positive_sampling, ks=[20], seed=2020, device=args.device)
    if args.continue_from:
        tr = snap.splits["train"]
        own = checkpoint_dir(args.models_dir, cfg, to_csr(tr.user, tr.item, snap.num_users, snap.num_items),
                             snapshot=snap)
        if seed_checkpoint(args.continue_from, own, cfg.lr):
            logging.info("seeded %s from %s", own, args.continue_from)
    device = resolve_device(args.device)
    if device.type == "cuda":
        torch.cuda.init()  # the reset alone does not start CUDA: with cuda:0 it would fail
        torch.cuda.reset_peak_memory_stats(device)
    rows: list[dict] = []
    t0 = time.perf_counter()
    clock: list[float] = []
    out = Path(args.out) if args.out else results_dir() / f"gnn_lightgcn_{Path(args.data).name}.json"
    out.parent.mkdir(parents=True, exist_ok=True)

    def summary(final: dict | None) -> dict:
        """The result so far; ``final`` is the artifact's metrics once training has ended."""
        epochs = [{"epoch": r["epoch"], "loss": round(r["loss"], 5), "train_s": r["train_s"],
                   "eval_s": r.get("eval_s"), "wall_s": round(c, 1),
                   "recall@20": round(r["test_recall@20"], 4) if "test_recall@20" in r else None,
                   "ndcg@20": round(r["test_ndcg@20"], 4) if "test_ndcg@20" in r else None}
                  for r, c in zip(rows, clock)]
        reached = next((e for e in epochs if (e["recall@20"] or 0) >= args.target_recall), None)
        evaluated = [e for e in epochs if e["ndcg@20"] is not None]
        best = max(evaluated, key=lambda e: e["ndcg@20"], default=None)
        if final is not None:
            best = {"epoch": final["best_epoch"], "recall@20": round(final["test"]["recall@20"], 4),
                    "ndcg@20": round(final["test"]["ndcg@20"], 4)}
        return {"model": "lightgcn (gnn.models.lightgcn)", "dataset": Path(args.data).name,
                "config": {k: str(v) if isinstance(v, Path) else v for k, v in vars(cfg).items()},
                "continued_from": args.continue_from,
                "complete": final is not None, "budget_s": args.budget_s,
                "wall_s": round(time.perf_counter() - t0, 1), "epochs": epochs,
                "mean_epoch_train_s": round(sum(r["train_s"] for r in rows) / len(rows), 2),
                "median_epoch_train_s": round(statistics.median(r["train_s"] for r in rows), 2),
                "min_epoch_train_s": round(min(r["train_s"] for r in rows), 2),
                "best": best and {k: best[k] for k in ("epoch", "recall@20", "ndcg@20")},
                "time_to_target": {"recall@20": args.target_recall,
                                   "wall_s": reached["wall_s"] if reached else None,
                                   "epoch": reached["epoch"] if reached else None,
                                   "reached": reached is not None},
                "peak_memory": {"gpu_mib": round(torch.cuda.max_memory_allocated(device) / 2**20, 1)
                                if device.type == "cuda" else None, "rss_mib": round(peak_rss_mb(), 1),
                                # before the first evaluation: training alone (the peak above is
                                # mostly evaluation's, at its own batch of users)
                                "train_gpu_mib": train_peak[0] if train_peak else None},
                "machine": device_info(device),
                "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}

    train_peak: list[float] = []

    def hook(epoch: int, row: dict) -> None:
        if device.type == "cuda" and not any("test_ndcg@20" in r for r in rows + [row]):
            train_peak[:] = [round(torch.cuda.max_memory_allocated(device) / 2**20, 1)]
        rows.append(dict(row))
        clock.append(time.perf_counter() - t0)
        if "test_ndcg@20" in row:  # a killed run still leaves its figures so far ("complete": false)
            out.write_text(json.dumps(summary(None), indent=2))

    try:
        with tempfile.TemporaryDirectory() as tmp:
            art = train(snap, cfg, Path(args.models_dir or tmp), epoch_hook=hook, max_time_s=args.budget_s,
                        progress=False, publish_current=False)
            result = summary(json.loads((art / "metrics.json").read_text()))
    except Exception as e:  # a first run on a new device: the baseline is still measured, then it raises
        if not args.baseline:
            raise
        failed = e
        result = {"ours_error": f"{type(e).__name__}: {e}", "machine": device_info(device),
                  "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    else:
        failed = None
        print(json.dumps({"ours": result["epochs"]}), flush=True)
    out.write_text(json.dumps(result, indent=2))  # ours' figures stand even if the baseline fails
    if args.baseline:
        base, base_peak = run_baseline(args.baseline_recipe, args.data, args.baseline_epochs, args.baseline_budget_s,
                                       args.baseline_eval_every)
        base_epoch_s = sum(r["train_s"] for r in base) / len(base)
        result["baseline"] = {"recipe": "shared/baselines/pyg_lightgcn_recipe.py (PyG LightGCN, 3 layers, batch 8192, "
                                        "lr 1e-3)",
                              "epochs": base, "mean_epoch_train_s": round(base_epoch_s, 2),
                              "median_epoch_train_s": round(statistics.median(r["train_s"] for r in base), 2),
                              "eval_every": args.baseline_eval_every, "peak_memory": base_peak}
        if failed is not None:
            out.write_text(json.dumps(result, indent=2))
            raise failed
        epochs = result["epochs"]
        ours_rows = [r for r in epochs if r.get("train_s") is not None]  # the unrounded times: not the
        ours_epoch_s = sum(r["train_s"] for r in ours_rows) / len(ours_rows)  # 2-decimal means stored
        # not the same work per epoch: the batch sizes (so steps per epoch) differ;
        # time_to_baseline_quality is the like-for-like figure. Both run in fp32: [train] amp leaves
        # LightGCN as it is (its sparse products run with autocast off, its BPR terms are elementwise)
        train_pairs = len(snap.splits["train"])
        result["work_per_epoch"] = {
            "ours": {"batch_size": args.batch_size, "steps": -(-train_pairs // args.batch_size), "amp": False},
            "baseline": {"batch_size": 8192, "steps": -(-train_pairs // 8192), "amp": False}}
        result["step_time_ratio_baseline_over_ours"] = round(
            (base_epoch_s / result["work_per_epoch"]["baseline"]["steps"])
            / (ours_epoch_s / result["work_per_epoch"]["ours"]["steps"]), 2)
        result["epoch_time_ratio_baseline_over_ours"] = round(base_epoch_s / ours_epoch_s, 2)
        result["epoch_time_ratio_baseline_over_ours_median"] = round(  # medians both sides
            statistics.median(r["train_s"] for r in base) / statistics.median(r["train_s"] for r in ours_rows), 2)
        result["time_to_baseline_quality"] = time_to_quality(epochs, base)
        result["time_to_target_quality"] = time_to_quality(epochs, base, args.target_recall)  # a fixed bar
        print(json.dumps({"baseline": base, "ratio": result["epoch_time_ratio_baseline_over_ours"],
                          "time_to_baseline_quality": result["time_to_baseline_quality"]}), flush=True)
        out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
