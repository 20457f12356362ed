"""Cost of one LightGCN BPR step on Gowalla (forward, backward, Adam), by batch size.

Usage: python bench/bench_step.py [--data DIR] [--device auto] [--batch-sizes 2048,8192] [--steps 20]
The adjacency ``LightGCN.build_adjacency`` builds (int32 CSR indices) is timed against the same matrix
with int64 indices (what it built before: the CPU product then converts the indices on every call),
in the same run, alternating step by step so that both see the same machine load. Median of
``--steps`` steps after two warm-ups; on CUDA the device is synchronised around each step. Writes
bench/results/step_<dataset>_<device>.json.
"""
from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import timed, write_result  # noqa: E402


def main() -> None:
    from bench_gnn_gfcf import device_info
    from gnn.evaluate import to_csr
    from gnn.models.lightgcn import LightGCN
    from gnn.train import resolve_device
    from kg.sources.lightgcn import snapshot_from_lightgcn

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "gowalla"))
    ap.add_argument("--device", default="auto")
    ap.add_argument("--batch-sizes", default="2048,8192")
    ap.add_argument("--steps", type=int, default=20)
    args = ap.parse_args()
    device = resolve_device(args.device)
    snap = snapshot_from_lightgcn(args.data)
    tr = snap.splits["train"]
    U, I = snap.num_users, snap.num_items
    coo = to_csr(tr.user, tr.item, U, I).tocoo()
    ours = LightGCN.build_adjacency(coo.row, coo.col, U, I, device=device)
    int64 = torch.sparse_csr_tensor(ours.crow_indices().long(), ours.col_indices().long(), ours.values(),
                                    ours.shape, check_invariants=False)
    adjs = {"ours": ours, "int64": int64}
    model = LightGCN(U, I, 64, 3).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3, fused=device.type == "cuda")  # as gnn.train
    gen = torch.Generator(device=device).manual_seed(0)

    def step(adj: torch.Tensor, u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        model.loss(adj, u, p, n).backward()
        opt.step()

    rows = []
    for batch in (int(b) for b in args.batch_sizes.split(",")):
        times: dict[str, list[float]] = {name: [] for name in adjs}
        for i in range(args.steps + 2):  # the first two steps of each warm up and are not timed
            for name, adj in adjs.items():
                u, p, n = (torch.randint(0, hi, (batch,), generator=gen, device=device) for hi in (U, I, I))
                seconds = timed(lambda: step(adj, u, p, n), device)
                if i >= 2:
                    times[name].append(seconds)
        row = {"batch_size": batch, **{f"{name}_step_ms": round(statistics.median(t) * 1000, 2)
                                       for name, t in times.items()}}
        row["ratio_int64_over_ours"] = round(statistics.median(times["int64"]) / statistics.median(times["ours"]), 3)
        rows.append(row)
        print(row, flush=True)
    out = write_result(f"step_{Path(args.data).name}_{device.type}", {
        "what": "median milliseconds of one BPR step (forward, backward, Adam) of LightGCN 64-d, 3 layers",
        "nnz": int(ours.values().numel()), "ours_index_dtype": str(ours.col_indices().dtype), "rows": rows,
        "device_info": device_info(device)})
    print(out)


if __name__ == "__main__":
    main()
