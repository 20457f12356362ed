"""Full-graph vs neighbour-sampled R-GCN on a synthetic catalogue: epoch time, peak memory, Recall@20.

Usage: python bench/bench_gnn_sampled.py [--parts train,scale] [--users 20000] [--items 8000] [--per-user 10]
       [--epochs 5] [--batch-size 4096] [--num-neighbors 10,5] [--scale-users 10000,40000,120000]
       [--threads 1] [--device auto]

Part "train": generates kg.synthetic's planted catalogue (no Neo4j), saves it as a snapshot in a
temporary directory, then trains each variant with gnn.train.train in its own subprocess, one after the
other, so that peak RSS (CPU; the kernel's peak mark is reset after loading, so set-up is excluded) or
torch.cuda.max_memory_allocated (CUDA) belongs to that variant alone. Both variants use the same batch
size, learning rate, epochs and seed; Recall@20 is full-ranking on the test split of the best
validation epoch. The sampled variant also reports the sizes of sampled subgraphs for a few
batches against the full graph.

Part "scale": on graphs of growing size (users x 5 interactions, items = users / 3), the median time
and peak-RSS growth of one BPR step of each variant at --scale-batch-size triples, and the sampled
subgraph's size: the full-graph step grows with the graph, the sampled one with batch x fan-out.

Writes bench/results/gnn_sampled.json (--out to change the name).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from kg.snapshot import Snapshot

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import peak_rss_mb, timed, write_result  # noqa: E402


def _status_mb(field: str) -> float | None:
    """A memory line of /proc/self/status in MiB (Linux), else None."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def reset_peak_rss() -> float:
    """Reset the kernel's peak-RSS mark (Linux ``clear_refs`` 5) and return the current RSS in MiB.

    Afterwards :func:`peak_rss_since_reset_mb` is the peak of what ran since, not of the set-up before.
    Where the reset is unavailable the peak stays the process-lifetime one (``ru_maxrss``)."""
    try:
        with open("/proc/self/clear_refs", "w") as fh:
            fh.write("5")
    except OSError:
        pass
    return _status_mb("VmRSS") or peak_rss_mb()


def peak_rss_since_reset_mb() -> float:
    return _status_mb("VmHWM") or peak_rss_mb()


def synthetic_snapshot(users: int, items: int, per_user: int, seed: int) -> Snapshot:
    """kg.synthetic's planted catalogue as a snapshot without Neo4j (the export's relation names, ratio split)."""
    from kg.export import split_interactions
    from kg.snapshot import Interactions, Snapshot
    from kg.synthetic import SyntheticSpec, generate
    from kgrec.config import ExportConfig

    rec = generate(SyntheticSpec(num_users=users, num_items=items, num_communities=8, interactions_per_user=per_user,
                                 num_queries=max(8, users // 50), seed=seed))
    ids = {"user": [r["id"] for r in rec.users], "item": [r["id"] for r in rec.items],
           "query": [r["id"] for r in rec.queries], "entity": [r["id"] for r in rec.entities]}
    ix = {t: {v: i for i, v in enumerate(ids[t])} for t in ids}
    u = np.fromiter((ix["user"][r["user"]] for r in rec.interactions), np.int64, len(rec.interactions))
    i = np.fromiter((ix["item"][r["item"]] for r in rec.interactions), np.int64, len(rec.interactions))
    ts = np.fromiter((r["ts"] for r in rec.interactions), np.int64, len(rec.interactions))
    codes = split_interactions(u, i, ts, ExportConfig(split="ratio", seed=seed))
    splits = {name: Interactions(u[codes == c], i[codes == c], np.ones(int((codes == c).sum()), np.float32),
                                 ts[codes == c], np.zeros(int((codes == c).sum()), np.int16))
              for c, name in enumerate(("train", "valid", "test"))}
    edges: dict[str, list[tuple[int, int]]] = {}
    types: dict[str, tuple[str, str]] = {}
    for rows, rel_of, (src_t, sk), (dst_t, dk) in (
            (rec.item_entities, lambda r: "has:" + r["relation"], ("item", "item"), ("entity", "entity")),
            (rec.user_queries, lambda r: "searched", ("user", "user"), ("query", "query")),
            (rec.query_items, lambda r: "relevant", ("query", "query"), ("item", "item"))):
        for r in rows:
            types[rel_of(r)] = (src_t, dst_t)
            edges.setdefault(rel_of(r), []).append((ix[src_t][r[sk]], ix[dst_t][r[dk]]))
    return Snapshot(ids=ids, entity_types=[r["type"] for r in rec.entities],
                    item_titles=[r["title"] for r in rec.items], item_descriptions=[""] * len(rec.items),
                    query_texts=[r["text"] for r in rec.queries], entity_names=[r["name"] for r in rec.entities],
                    splits=splits, relations={k: np.asarray(v, dtype=np.int64).T for k, v in edges.items()},
                    relation_types=types, meta={"name": f"synthetic-{users}u-{items}i"})


def subgraph_sizes(snap: Snapshot, num_neighbors: list[int], batch_size: int, layers: int,
                   batches: int = 5) -> dict:
    """Nodes and edges of sampled subgraphs for ``batches`` random batches of triples, against the full graph."""
    import torch

    from gnn.models.rgcn import RGCNRec
    from gnn.sampled import prepare

    counts = {t: snap.num_nodes(t) for t in ("user", "item", "query", "entity")}
    tr = snap.splits["train"]
    model = RGCNRec(counts, RGCNRec.count_relations(snap.relations), embedding_dim=8, num_layers=layers)
    wrapped, graph = prepare(model, RGCNRec.build_graph(tr.user, tr.item, counts, snap.relations,
                                                        snap.relation_types), "neighbor", num_neighbors)
    rng = np.random.default_rng(0)
    rows = []
    for _ in range(batches):
        pick = rng.choice(len(tr), min(batch_size, len(tr)), replace=False)
        seeds, _ = wrapped.seeds(torch.from_numpy(tr.user[pick]), torch.from_numpy(tr.item[pick]),
                                 torch.from_numpy(rng.integers(0, snap.num_items, len(pick))))
        t0 = time.perf_counter()
        b = graph.subgraph(seeds)
        rows.append((seeds.numel(), b.num_nodes, b.edge_index.size(1), time.perf_counter() - t0))
    a = np.asarray(rows, dtype=np.float64)
    return {"graph_nodes": graph.num_nodes, "graph_edges": graph.num_edges, "num_neighbors": graph.num_neighbors,
            "sampling": "per node and relation", "batch_triples": batch_size, "mean_seeds": round(float(a[:, 0].mean()), 1),
            "mean_nodes": round(float(a[:, 1].mean()), 1), "max_nodes": int(a[:, 1].max()),
            "mean_edges": round(float(a[:, 2].mean()), 1), "max_edges": int(a[:, 2].max()),
            "node_bound": graph.max_subgraph_nodes(int(a[:, 0].max())),
            "mean_sample_ms": round(1000 * float(a[:, 3].mean()), 1)}


def run_variant(args: argparse.Namespace) -> None:
    """Child process: train one variant and print one JSON line."""
    import torch

    from gnn.train import resolve_device, train
    from kg.snapshot import Snapshot
    from kgrec.config import TrainConfig

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    import matplotlib.figure  # noqa: F401 - imported by train() at the end; counted in the baseline
    import torch_geometric.nn  # noqa: F401 - likewise (RGCNConv)

    snap = Snapshot.load(args.snapshot)
    rss_loaded = reset_peak_rss()  # interpreter, libraries and snapshot: the baseline before training
    if device.type == "cuda":
        torch.cuda.init()  # the reset alone does not start CUDA: with cuda:0 it would fail
        torch.cuda.reset_peak_memory_stats(device)
    cfg = TrainConfig(model="rgcn", embedding_dim=args.dim, num_layers=args.layers, lr=args.lr, weight_decay=1e-4,
                      batch_size=args.batch_size, epochs=args.epochs, eval_every=1, patience=1000, ks=[20],
                      seed=2020, device=args.device, sampler=args.variant,
                      num_neighbors=[int(k) for k in args.num_neighbors.split(",")])
    rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        art = train(snap, cfg, Path(tmp), epoch_hook=lambda e, r: rows.append(dict(r)), progress=False)
        metrics = json.loads((art / "metrics.json").read_text())
    out = {"variant": args.variant, "device": str(device),
           "epochs": [{"epoch": r["epoch"], "loss": round(r["loss"], 5), "train_s": r["train_s"],
                       "eval_s": r.get("eval_s"), "valid_recall@20": round(r["valid_recall@20"], 4)} for r in rows],
           "mean_epoch_train_s": round(sum(r["train_s"] for r in rows) / len(rows), 2),
           "mean_eval_s": round(sum(r["eval_s"] for r in rows) / len(rows), 2),
           "test_recall@20": round(metrics["test"]["recall@20"], 4),
           "test_ndcg@20": round(metrics["test"]["ndcg@20"], 4), "best_epoch": metrics["best_epoch"],
           "rss_after_load_mb": round(rss_loaded, 1), "peak_rss_mb": round(peak_rss_since_reset_mb(), 1)}
    if device.type == "cuda":
        out["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    if args.variant == "neighbor":
        out["subgraph"] = subgraph_sizes(snap, cfg.num_neighbors, args.batch_size, args.layers)
    print(json.dumps(out), flush=True)


def run_steps(args: argparse.Namespace) -> None:
    """Child process: a few BPR steps of one variant on a freshly generated graph; print one JSON line."""
    import torch

    from gnn.models.rgcn import RGCNRec
    from gnn.sampled import prepare
    from gnn.train import resolve_device

    torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    snap = synthetic_snapshot(args.users, args.items, args.per_user, seed=7)
    counts = {t: snap.num_nodes(t) for t in ("user", "item", "query", "entity")}
    tr = snap.splits["train"]
    torch.manual_seed(0)
    model = RGCNRec(counts, RGCNRec.count_relations(snap.relations), embedding_dim=args.dim,
                    num_layers=args.layers).to(device)
    graph = RGCNRec.build_graph(tr.user, tr.item, counts, snap.relations, snap.relation_types)
    step_model, graph = ((model, tuple(t.to(device) for t in graph)) if args.variant == "step-full" else
                         prepare(model, graph, "neighbor", [int(k) for k in args.num_neighbors.split(",")]))
    opt = torch.optim.Adam(model.parameters(), lr=args.lr)
    rng = np.random.default_rng(0)
    rss0 = reset_peak_rss()  # graph generation and set-up excluded from the peak
    if device.type == "cuda":
        torch.cuda.init()  # the reset alone does not start CUDA: with cuda:0 it would fail
        torch.cuda.reset_peak_memory_stats(device)

    def step(u: torch.Tensor, p: torch.Tensor, n: torch.Tensor) -> None:
        opt.zero_grad(set_to_none=True)
        step_model.loss(graph, u, p, n).backward()
        opt.step()

    times = []
    for s in range(args.steps + 1):  # the first step warms up and is not timed
        pick = rng.choice(len(tr), args.batch_size, replace=False)
        u, p = torch.from_numpy(tr.user[pick]).to(device), torch.from_numpy(tr.item[pick]).to(device)
        n = torch.from_numpy(rng.integers(0, snap.num_items, args.batch_size)).to(device)
        seconds = timed(lambda: step(u, p, n), device)
        if s:
            times.append(seconds)
    out = {"variant": args.variant, "device": str(device), "users": args.users, "nodes": model.num_total,
           "edges": int(graph[0].size(1)) if args.variant == "step-full" else graph.num_edges,
           "train_interactions": len(tr), "step_s": round(float(np.median(times)), 3),
           "rss_before_steps_mb": round(rss0, 1), "peak_rss_mb": round(peak_rss_since_reset_mb(), 1),
           "step_rss_growth_mb": round(peak_rss_since_reset_mb() - rss0, 1)}
    if device.type == "cuda":
        out["cuda_max_memory_allocated_mb"] = round(torch.cuda.max_memory_allocated(device) / 2 ** 20, 1)
    if args.variant == "step-neighbor":
        sizes = subgraph_sizes(snap, [int(k) for k in args.num_neighbors.split(",")], args.batch_size, args.layers, 3)
        out["subgraph_nodes"], out["subgraph_edges"] = sizes["mean_nodes"], sizes["mean_edges"]
    print(json.dumps(out), flush=True)


def _child(args: argparse.Namespace, variant: str, extra: dict) -> dict:
    """Run one variant in a fresh interpreter (its own peak RSS) and parse its JSON line."""
    cmd = [sys.executable, __file__, "--variant", variant]
    for k in ("epochs", "batch_size", "lr", "dim", "layers", "num_neighbors", "threads", "device"):
        cmd += [f"--{k.replace('_', '-')}", str(extra.get(k, getattr(args, k)))]
    for k, v in extra.items():
        if k not in ("batch_size",):
            cmd += [f"--{k.replace('_', '-')}", str(v)]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} failed: {proc.stderr[-3000:]}")
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    print(json.dumps(out), flush=True)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--parts", default="train,scale", help="train: full vs sampled training runs; "
                    "scale: one BPR step of each on growing graphs")
    ap.add_argument("--users", type=int, default=20000)
    ap.add_argument("--items", type=int, default=8000)
    ap.add_argument("--per-user", type=int, default=10)
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--batch-size", type=int, default=4096)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=2)
    ap.add_argument("--num-neighbors", default="10,5")
    ap.add_argument("--scale-users", default="10000,40000,120000", help="graph sizes (users) for the scale part")
    ap.add_argument("--scale-batch-size", type=int, default=1024)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per size in the scale part")
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads per variant")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--out", default="gnn_sampled", help="result name under bench/results/")
    ap.add_argument("--variant", help=argparse.SUPPRESS)
    ap.add_argument("--snapshot", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s")
    if args.variant in ("full", "neighbor"):
        run_variant(args)
        return
    if args.variant:
        run_steps(args)
        return

    parts = set(args.parts.split(","))
    payload: dict = {"model": "rgcn (gnn.models.rgcn.RGCNRec)",
                     "config": {k: getattr(args, k) for k in ("epochs", "batch_size", "lr", "dim", "layers",
                                                               "num_neighbors", "threads", "device")}}
    if "train" in parts:
        t0 = time.perf_counter()
        snap = synthetic_snapshot(args.users, args.items, args.per_user, seed=7)
        data = {"users": snap.num_users, "items": snap.num_items, "queries": snap.num_nodes("query"),
                "entities": snap.num_nodes("entity"), "interactions": {k: len(v) for k, v in snap.splits.items()},
                "relations": {k: int(v.shape[1]) for k, v in snap.relations.items()},
                "generate_s": round(time.perf_counter() - t0, 1)}
        print(json.dumps({"data": data}), flush=True)
        with tempfile.TemporaryDirectory() as tmp:
            snap.save(Path(tmp) / "snap")
            del snap
            runs = {v: _child(args, v, {"snapshot": Path(tmp) / "snap"}) for v in ("full", "neighbor")}
        f, s = runs["full"], runs["neighbor"]
        payload["train"] = {
            "data": data, "variants": runs,
            "summary": {
                "epoch_train_s": {"full": f["mean_epoch_train_s"], "neighbor": s["mean_epoch_train_s"]},
                "eval_s": {"full": f["mean_eval_s"], "neighbor": s["mean_eval_s"]},
                "peak_rss_mb": {"full": f["peak_rss_mb"], "neighbor": s["peak_rss_mb"]},
                "training_rss_growth_mb": {v: round(r["peak_rss_mb"] - r["rss_after_load_mb"], 1)
                                           for v, r in runs.items()},
                "test_recall@20": {"full": f["test_recall@20"], "neighbor": s["test_recall@20"]},
                "test_ndcg@20": {"full": f["test_ndcg@20"], "neighbor": s["test_ndcg@20"]}}}
    if "scale" in parts:
        rows = []
        for users in (int(u) for u in args.scale_users.split(",")):
            size = {"users": users, "items": max(100, users // 3), "per_user": 5, "steps": args.steps,
                    "batch_size": args.scale_batch_size}
            rows.append({"full": _child(args, "step-full", size), "neighbor": _child(args, "step-neighbor", size)})
        payload["scale"] = {"batch_size": args.scale_batch_size, "per_user": 5, "items_per_user": 1 / 3,
                            "rows": rows}
    payload["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    print(write_result(args.out, payload))


if __name__ == "__main__":
    main()
