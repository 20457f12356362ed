"""The ridge map that embeds untrained items (``gnn.coldstart.RidgeMap``): fitted from sums, against
the fit on centred float64 copies before.

Usage: python bench/bench_ridge_map.py [--rows 100000] [--features 768] [--dim 64] [--repeats 3]

``map_untrained_items`` fits the map on up to 100,000 trained items, each with its side features
(the item's text vector beside the mean of its attributes': 768 with MiniLM) and its embedding.
Each fit runs in a fresh child process, alternating with the baseline, and reports its wall time and
its peak heap above the inputs (``tracemalloc``, which numpy reports to). The baseline is the fit
before session 36, restated here (:func:`centred_fit`): a float64 copy of the features, and for each
of the five candidate alphas a centred copy of the training rows. Both must give the same map.
Writes bench/results/ridge_map_<rows>rows.json.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import write_result  # noqa: E402
from gnn.coldstart import RidgeMap  # noqa: E402

ALPHAS = (0.01, 0.1, 1.0, 10.0, 100.0)


def _centred_solve(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    mx, my = x.mean(0), y.mean(0)
    xc, yc = x - mx, y - my
    w = np.linalg.solve(xc.T @ xc + alpha * np.eye(x.shape[1]), xc.T @ yc)
    return w, my - mx @ w


def centred_fit(x: np.ndarray, y: np.ndarray, valid_fraction: float = 0.1, seed: int = 0
                ) -> tuple[float, np.ndarray, np.ndarray]:
    """RidgeMap.fit before session 36 (the baseline): ``(alpha, weight, bias)``."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    n_val = int(round(valid_fraction * x.shape[0]))
    perm = np.random.default_rng(seed).permutation(x.shape[0])
    va, tr = perm[:n_val], perm[n_val:]
    errors = []
    for a in ALPHAS:
        w, b = _centred_solve(x[tr], y[tr], a)
        errors.append(float(((x[va] @ w + b - y[va]) ** 2).sum()))
    alpha = ALPHAS[int(np.argmin(errors))]
    w, b = _centred_solve(x, y, alpha)
    return alpha, w, b


def data(rows: int, features: int, dim: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Unit text-like features (float32, as the pipeline passes them) and embeddings they partly explain."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(rows, features)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    y = (x @ rng.normal(size=(features, dim)).astype(np.float32) + 0.3 * rng.normal(size=(rows, dim))).astype(np.float32)
    return x, y


def child(impl: str, rows: int, features: int, dim: int, out: Path) -> dict:
    x, y = data(rows, features, dim)
    tracemalloc.start()
    base = tracemalloc.get_traced_memory()[0]
    t = time.perf_counter()
    if impl == "centred":
        alpha, w, b = centred_fit(x, y)
    else:
        ridge = RidgeMap().fit(x, y)
        alpha, w, b = ridge.alpha, ridge.weight, ridge.bias
    wall = time.perf_counter() - t
    peak = tracemalloc.get_traced_memory()[1] - base
    np.savez(out, w=w, b=b)
    return {"wall_s": round(wall, 3), "heap_peak_mib": round(peak / 2**20, 1), "alpha": alpha}


def run_child(impl: str, args: argparse.Namespace, out: Path) -> dict:
    res = subprocess.run([sys.executable, __file__, "--child", impl, str(out), "--rows", str(args.rows),
                          "--features", str(args.features), "--dim", str(args.dim)],
                         check=True, capture_output=True, text=True)
    return json.loads(res.stdout)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--features", type=int, default=768)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--child", nargs=2, metavar=("IMPL", "OUT"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        impl, out = args.child
        print(json.dumps(child(impl, args.rows, args.features, args.dim, Path(out))))
        return
    scratch = ROOT / ".kgrec" / "bench-ridge"  # each child's map, compared at the end
    scratch.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict]] = {"centred": [], "moments": []}
    for _ in range(args.repeats):
        for impl in runs:  # alternated, so drift on the machine hits both
            runs[impl].append(run_child(impl, args, scratch / f"{impl}.npz"))
            print(impl, runs[impl][-1])
    old, new = np.load(scratch / "centred.npz"), np.load(scratch / "moments.npz")
    same = {"weight_max_abs_diff": float(np.abs(old["w"] - new["w"]).max()),
            "bias_max_abs_diff": float(np.abs(old["b"] - new["b"]).max()),
            "alpha_same": len({r["alpha"] for rs in runs.values() for r in rs}) == 1}
    summary = {f"{impl}_{metric}": float(np.median([r[metric] for r in rs]))
               for impl, rs in runs.items() for metric in ("wall_s", "heap_peak_mib")}
    for metric in ("wall_s", "heap_peak_mib"):
        summary[f"{metric}_ratio_centred_over_moments"] = round(summary[f"centred_{metric}"] / summary[f"moments_{metric}"], 2)
    print(summary, same)
    for f in scratch.glob("*.npz"):
        f.unlink()
    scratch.rmdir()
    out = write_result(f"ridge_map_{args.rows}rows", {
        "rows": args.rows, "features": args.features, "dim": args.dim, "repeats": args.repeats, "alphas": ALPHAS,
        "baseline": "RidgeMap.fit before session 36 (centred float64 copies per alpha), restated in the bench",
        "summary": summary, "same_map": same, "runs": runs})
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
