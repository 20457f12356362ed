"""GF-CF on the LightGCN Gowalla split (full ranking, train items masked).

Usage: python bench/bench_gnn_gfcf.py [--data DIR] [--k 256] [--alpha 0.3] [--solver arpack]
Writes bench/results/gnn_gfcf_<dataset>.json. Reference (GF-CF paper): Recall@20 0.1849, NDCG@20 0.1518.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import results_dir  # noqa: E402


def device_info(device: torch.device) -> dict:
    """The machine a figure was measured on."""
    info = {"device": str(device), "platform": platform.platform(), "python": platform.python_version(),
            "torch": torch.__version__, "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "processor": platform.processor() or platform.machine()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def main() -> None:
    from gnn.evaluate import evaluate, to_csr
    from gnn.models.bspm import BSPM
    from gnn.models.gfcf import GFCF
    from kg.sources.lightgcn import snapshot_from_lightgcn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "gowalla"))
    ap.add_argument("--model", default="gfcf", choices=["gfcf", "bspm"],
                    help="bspm: blur-sharpen filter (defaults below are the BSPM authors' Gowalla setting)")
    ap.add_argument("--k", type=int, default=None, help="SVD rank (gfcf 256, bspm 448)")
    ap.add_argument("--beta", type=float, default=0.2, help="bspm: ideal low-pass weight")
    ap.add_argument("--sharpen-time", type=float, default=2.5)
    ap.add_argument("--sharpen-steps", type=int, default=1)
    ap.add_argument("--sharpen-solver", default="rk4", choices=["euler", "rk4"])
    ap.add_argument("--alpha", type=float, default=0.3)
    ap.add_argument("--solver", default="arpack", choices=["arpack", "randomized"])
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    device = torch.device("cuda" if args.device == "auto" and torch.cuda.is_available()
                          else ("cpu" if args.device == "auto" else args.device))
    t0 = time.perf_counter()
    snap = snapshot_from_lightgcn(args.data)
    tr, te = snap.splits["train"], snap.splits["test"]
    R = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    T = to_csr(te.user, te.item, snap.num_users, snap.num_items)
    load_s = time.perf_counter() - t0
    if device.type == "cuda":  # CUDA's start-up and the first sparse product's set-up are not the filter's time
        warm = torch.sparse_coo_tensor(torch.zeros(2, 1, dtype=torch.long), torch.ones(1), (1, 1)).to(device)
        torch.sparse.mm(warm, torch.ones(1, 1, device=device))
        torch.cuda.synchronize(device)
    if args.model == "gfcf":
        args.k = args.k or 256
        model = GFCF(k=args.k, alpha=args.alpha, svd_solver=args.solver, device=device).fit(R)
        params = {"k": args.k, "alpha": args.alpha}
    else:
        args.k = args.k or 448
        model = BSPM(k=args.k, beta=args.beta, sharpen_time=args.sharpen_time, sharpen_steps=args.sharpen_steps,
                     sharpen_solver=args.sharpen_solver, svd_solver=args.solver, device=device).fit(R)
        params = {"k": args.k, "beta": args.beta, "sharpen_time": args.sharpen_time,
                  "sharpen_steps": args.sharpen_steps, "sharpen_solver": args.sharpen_solver}
    t1 = time.perf_counter()
    metrics = evaluate(model.score, R, T, [10, 20, 50], snap.num_items, batch_size=args.batch_size, device=device)
    eval_s = time.perf_counter() - t1
    result = {"model": args.model, "dataset": Path(args.data).name, **params, "solver": args.solver, "load_s": round(load_s, 2), "fit_s": round(model.fit_seconds, 2),
              "eval_s": round(eval_s, 2), "recall@20": round(metrics["recall@20"], 4),
              "ndcg@20": round(metrics["ndcg@20"], 4),
              "reference": None if Path(args.data).name != "gowalla" else  # the papers' Gowalla figures
              ({"recall@20": 0.1849, "ndcg@20": 0.1518, "source": "GF-CF paper"} if args.model == "gfcf" else
               {"recall@20": 0.1920, "ndcg@20": 0.1597, "source": "BSPM paper (BSPM-EM)"}),
              "metrics": metrics, "machine": device_info(device),
              "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = Path(args.out) if args.out else results_dir() / f"gnn_{args.model}_{result['dataset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps({k: v for k, v in result.items() if k not in ("metrics", "machine")}))


if __name__ == "__main__":
    main()
