"""New users from their search queries (``Recommender.recommend_from_items(..., queries=[...])``,
``POST /recommend/cold``) on the demo catalogue, beside popularity and new users from items.

Usage: python bench/bench_cold_queries.py [--models lightgcn,kgfused] [--query-items 1,3,10,30,100]
after ``make demo`` (its encoded snapshot ``.kgrec/snapshots/demo-latest``). Writes
bench/results/cold_queries_demo.json.

``gnn.coldstart.hold_out_users`` removes 30 % of the users (seed 2020) with all their interactions
and searches from the snapshot; each model is trained on the rest with the demo's settings (40
epochs, lr 0.01, batch 1,024) and served through ``serving.Recommender``. The held-out users who
searched at least one query are then recommended for, Recall@20 and NDCG@20 against their whole
history, from: popularity (training counts); their query texts alone; their first 3 interactions
alone (scored against the other interactions, as the ablation does, so on a different truth set);
and both (also against the other interactions). Each query stands
for its ``query_items`` best text matches (swept).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from dataclasses import replace
from pathlib import Path

import numpy as np

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]


def recall_ndcg(ranked: list[str], truth: set[str], k: int = 20) -> tuple[float, float]:
    """Recall@k (hits / |truth|, as ``gnn.metrics``) and NDCG@k of one list against a set of relevant ids."""
    hits = [1.0 if i in truth else 0.0 for i in ranked[:k]]
    dcg = sum(h / np.log2(r + 2) for r, h in enumerate(hits))
    idcg = sum(1 / np.log2(r + 2) for r in range(min(k, len(truth))))
    return sum(hits) / len(truth), dcg / idcg


def main() -> None:
    from encoders.encode import query_encoder_setting
    from gnn.artifact import TextIndex
    from gnn.coldstart import hold_out_users
    from gnn.train import train
    from kg.snapshot import Snapshot
    from kgrec.config import EncoderConfig, TrainConfig
    from serving.recommender import Recommender

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--snapshot", default=str(ROOT / ".kgrec" / "snapshots" / "demo-latest"))
    ap.add_argument("--models", default="lightgcn,kgfused")
    ap.add_argument("--query-items", default="1,3,10,30,100")
    ap.add_argument("--fraction", type=float, default=0.3)
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")

    snap_dir = Path(args.snapshot)
    snap = Snapshot.load(snap_dir)
    with np.load(snap_dir / "text_embeddings.npz") as z:
        text = {key: z[key] for key in z.files}
    setting = query_encoder_setting(snap_dir, EncoderConfig())
    split = hold_out_users(snap, args.fraction, shots=3, seed=args.seed)
    searched = snap.relations["searched"]
    cold = set(split.cold_users.tolist())
    user_queries: dict[int, list[str]] = {}
    for u, q in zip(searched[0].tolist(), searched[1].tolist()):
        if u in cold:
            user_queries.setdefault(u, []).append(snap.query_texts[q])
    item_ids = snap.ids["item"]
    history = {u: set() for u in user_queries}
    for part in (split.support, split.truth):
        for u, i in zip(part.user.tolist(), part.item.tolist()):
            if u in history:
                history[u].add(item_ids[i])
    support = {u: [item_ids[i] for i in split.support.item[split.support.user == u]] for u in user_queries}
    counts = np.bincount(split.snapshot.splits["train"].item, minlength=snap.num_items)
    popular = [item_ids[i] for i in np.argsort(-counts, kind="stable")[:20]]

    def mean_of(rows: list[tuple[float, float]]) -> dict[str, float]:
        return {"recall@20": round(statistics.fmean(r for r, _ in rows), 4),
                "ndcg@20": round(statistics.fmean(n for _, n in rows), 4)}

    results: dict = {"popularity": mean_of([recall_ndcg(popular, history[u]) for u in user_queries])}
    timings = {}
    for model in args.models.split(","):
        cfg = TrainConfig(model=model, epochs=40, lr=0.01, batch_size=1024, device="cpu", seed=args.seed)
        with tempfile.TemporaryDirectory() as tmp:
            t = time.perf_counter()
            art = train(split.snapshot, cfg, Path(tmp), text if model == "kgfused" else None, progress=False,
                        publish_current=False, text_index=TextIndex(text["item"], setting))
            timings[model] = round(time.perf_counter() - t, 1)
            rec = Recommender.load(art)
        rec.text_search.warm()
        rows = {}
        for m in [int(x) for x in args.query_items.split(",")]:
            rec.query_items = m
            rows[f"queries, {m} matches each"] = mean_of(
                [recall_ndcg([r.item_id for r in rec.recommend_from_items([], 20, queries=user_queries[u])], history[u])
                 for u in user_queries])
        rec.query_items = 10
        # from items: the support is given, so it is scored against the rest of the history
        rows["3 items"] = mean_of([recall_ndcg([r.item_id for r in rec.recommend_from_items(support[u], 20)],
                                               history[u] - set(support[u])) for u in user_queries])
        rows["3 items + queries (10 matches)"] = mean_of(
            [recall_ndcg([r.item_id for r in rec.recommend_from_items(support[u], 20, queries=user_queries[u])],
                         history[u] - set(support[u])) for u in user_queries])
        results[model] = rows
        print(model, rows)
    payload = {"snapshot": str(snap_dir.resolve()), "held_out_users": len(cold), "users_with_queries": len(user_queries),
               "queries_per_user": round(statistics.fmean(len(v) for v in user_queries.values()), 2),
               "results": results, "train_s": timings,
               "command": "python bench/bench_cold_queries.py " + " ".join(f"--{a.replace('_', '-')} {v}"
                                                                          for a, v in vars(args).items())}
    print("popularity", results["popularity"])
    print(write_result("cold_queries_demo", payload))


if __name__ == "__main__":
    main()
