"""What `kgrec train` now does for lightgcn's items without training events, on real data.

One LightGCN is trained on the ablation's encoded snapshot (``bench_ablation.py`` builds it:
ml-100k or lastfm through ingest -> Neo4j -> export, ratio split 70/10/20, MiniLM vectors). Its
item embeddings are then scored twice on the same test pairs: as trained (the items without
training events keep their untrained id embeddings, what `kgrec train` published before session
34) and after ``gnn.coldstart.map_untrained_items`` (a ridge map from [item text, mean attribute
text] fitted on the trained items, what it publishes now). Same model, same pairs: the difference
is the map alone.

Reported: the full test (ranking every item), the ``cold`` slice (test pairs whose item has no
training event, ranking every item) and ``cold_only`` (those pairs, ranking only those items), and
the map's wall time.

    .venv/bin/python bench/bench_untrained_items.py --dataset ml-100k [--epochs 200] [--budget-s 300]

Writes ``bench/results/untrained_items_<dataset>.json``.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import write_result  # noqa: E402
from bench_ablation import latest_snapshot, load_text, rounded  # noqa: E402


def main() -> None:
    import torch

    from gnn.coldstart import (evaluate_item_slice, item_side_features_of, item_train_counts, map_untrained_items,
                               snapshot_item_entity_edges)
    from gnn.evaluate import evaluate, to_csr
    from gnn.train import train
    from kg.snapshot import Snapshot
    from kgrec.config import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dataset", choices=["ml-100k", "lastfm"], required=True)
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--budget-s", type=float, default=300.0)
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args()

    snap_dir = latest_snapshot(args.dataset).resolve()
    if not (snap_dir / "text_embeddings.npz").is_file():
        raise SystemExit(f"no encoded snapshot at {snap_dir}: run bench/bench_ablation.py --dataset {args.dataset} "
                         f"--rows popularity first")
    snap = Snapshot.load(snap_dir)
    text = load_text(snap_dir)
    titles = json.loads((snap_dir / "texts.json").read_text(encoding="utf-8"))["item_title"]
    item_text = text["item"].copy()
    item_text[[not t for t in titles]] = 0  # no text: no feature, as kgrec.pipeline.train_model does
    cfg = TrainConfig(model="lightgcn", epochs=args.epochs, patience=args.patience, seed=args.seed, device="cpu",
                      ks=[20])
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as out:
        artifact = train(snap, cfg, out, progress=False, max_time_s=args.budget_s, publish_current=False)
        with np.load(artifact / "embeddings.npz") as z:
            users, items = z["user"], z["item"]
        best_epoch = json.loads((artifact / "metrics.json").read_text())["best_epoch"]
    train_s = time.perf_counter() - t0
    U, I = snap.num_users, snap.num_items
    tr, va, te = (snap.splits[s] for s in ("train", "valid", "test"))
    train_csr, valid_csr, test_csr = (to_csr(s.user, s.item, U, I) for s in (tr, va, te))
    trained = item_train_counts(train_csr) > 0
    edges = snapshot_item_entity_edges(snap)
    t0 = time.perf_counter()
    mapped, n_mapped = map_untrained_items(
        items, lambda rows: item_side_features_of(rows, item_text, text.get("entity"), edges), trained, seed=args.seed)
    map_s = time.perf_counter() - t0

    def figures(item_emb: np.ndarray) -> dict[str, dict[str, float]]:
        ue, ie = torch.from_numpy(users), torch.from_numpy(item_emb)
        score = lambda u: ue[u] @ ie.t()  # noqa: E731
        return {"test": rounded(evaluate(score, train_csr, test_csr, [20], I, exclude=valid_csr)),
                "cold": rounded(evaluate_item_slice(score, train_csr, test_csr, 0, [20], exclude=valid_csr)),
                "cold_only": rounded(evaluate_item_slice(score, train_csr, test_csr, 0, [20], exclude=valid_csr,
                                                         slice_only=True))}

    before, after = figures(items), figures(mapped)
    cold_pairs = evaluate_item_slice(lambda u: torch.zeros(len(u), I), train_csr, test_csr, 0, [20])["num_pairs"]
    payload = {"dataset": args.dataset, "snapshot": str(snap_dir), "users": U, "items": I,
               "untrained_items": int((~trained).sum()), "mapped_items": n_mapped, "cold_test_pairs": int(cold_pairs),
               "train_s": round(train_s, 1), "best_epoch": best_epoch, "map_s": round(map_s, 3),
               "config": {"epochs": args.epochs, "patience": args.patience, "budget_s": args.budget_s,
                          "seed": args.seed},
               "untrained_embeddings": before, "mapped": after,
               "command": "python bench/bench_untrained_items.py " + " ".join(sys.argv[1:])}
    path = write_result(f"untrained_items_{args.dataset}", payload)
    print(json.dumps({k: payload[k] for k in ("untrained_items", "mapped_items", "cold_test_pairs", "map_s",
                                              "untrained_embeddings", "mapped")}, indent=1))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
