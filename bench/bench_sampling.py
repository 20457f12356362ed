"""Cost of drawing one epoch's BPR triples (user, positive, negative) on Gowalla.

Usage: python bench/bench_sampling.py [--data DIR] [--repeats 5]
Times ``gnn.sampling`` (torch, on each available device: the CPU, and CUDA when present) against the
numpy sampler kgrec used before (host-side, drawn batch by batch, then copied to the device), in the
same run, for user and interaction positives with uniform and popularity negatives. On CUDA the
device side is synchronised before each clock read. Writes bench/results/sampling_<dataset>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import timed, write_result  # noqa: E402


def numpy_epoch(train: sp.csr_matrix, unit: str, strategy: str, rng: np.random.Generator, batch_size: int,
                device: torch.device) -> tuple[torch.Tensor, ...]:
    """The pre-torch sampler (the baseline): numpy draws per batch, rejection by binary search, one copy."""
    n_items, deg = train.shape[1], np.diff(train.indptr)
    if unit == "interaction":
        perm = rng.permutation(train.nnz)
        users = np.repeat(np.arange(train.shape[0], dtype=np.int64), deg)[perm]
        items = train.indices[perm].astype(np.int64)
    else:
        active = np.flatnonzero(deg > 0)
        users = active[rng.integers(0, len(active), train.nnz)].astype(np.int64)
        items = train.indices[train.indptr[users] + (rng.random(train.nnz) * deg[users]).astype(np.int64)]
    keys = np.repeat(np.arange(train.shape[0], dtype=np.int64), deg) * n_items + train.indices
    cdf = np.cumsum(np.bincount(train.indices, minlength=n_items) ** 0.75)
    cdf = cdf / cdf[-1]

    def draw(k: int) -> np.ndarray:
        if strategy == "popularity":
            return np.minimum(np.searchsorted(cdf, rng.random(k)), n_items - 1)
        return rng.integers(0, n_items, k)

    negs = []
    for b in range(0, len(users), batch_size):
        u = users[b:b + batch_size]
        neg = draw(len(u))
        for _ in range(10):
            key = u * n_items + neg
            bad = np.flatnonzero(keys[np.minimum(np.searchsorted(keys, key), len(keys) - 1)] == key)
            if len(bad) == 0:
                break
            neg[bad] = draw(len(bad))
        negs.append(neg)
    return tuple(torch.from_numpy(a).to(device) for a in (users, items, np.concatenate(negs)))


def main() -> None:
    from gnn.evaluate import to_csr
    from gnn.sampling import NegativeSampler, TrainPairs, make_generator
    from kg.sources.lightgcn import snapshot_from_lightgcn
    from bench_gnn_gfcf import device_info

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "gowalla"))
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=2048, help="the baseline's per-batch draw size")
    args = ap.parse_args()
    snap = snapshot_from_lightgcn(args.data)
    tr = snap.splits["train"]
    train = to_csr(tr.user, tr.item, snap.num_users, snap.num_items)
    devices = [torch.device("cpu")] + ([torch.device("cuda")] if torch.cuda.is_available() else [])

    def clock(fn, device: torch.device) -> float:
        fn()  # warm-up
        return round(statistics.median(timed(fn, device) for _ in range(args.repeats)), 4)

    rows = []
    for device in devices:
        pairs = TrainPairs(train, device)
        gen = make_generator(0, device)
        rng = np.random.default_rng(0)
        for unit in ("user", "interaction"):
            for strategy in ("uniform", "popularity"):
                sampler = NegativeSampler(pairs, strategy, gen)

                def ours() -> None:
                    u, _ = pairs.epoch_pairs(unit, gen)
                    sampler.sample(u)

                base_s = clock(lambda: numpy_epoch(train, unit, strategy, rng, args.batch_size, device), device)
                ours_s = clock(ours, device)
                row = {"device": str(device), "positives": unit, "negatives": strategy,
                       "numpy_baseline_s": base_s, "torch_s": ours_s, "ratio": round(base_s / ours_s, 2)}
                rows.append(row)
                print(row, flush=True)
    out = write_result(f"sampling_{Path(args.data).name}", {
        "what": "seconds to draw one epoch's (user, positive, negative) triples onto the device, median",
        "pairs_per_epoch": int(train.nnz), "baseline_batch_size": args.batch_size, "rows": rows,
        "devices": [device_info(d) for d in devices]})
    print(out)


if __name__ == "__main__":
    main()
