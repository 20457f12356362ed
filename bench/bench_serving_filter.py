"""A graph filter through the product path on Gowalla: ``gnn.train.train`` fits it and writes the
artifact, ``serving.Recommender`` loads it, and per-request latencies are measured.

Usage: python bench/bench_serving_filter.py [--model bspm] [--users 200]
The baseline in the same run is the same artifact served by dot products of its low-pass
embeddings (what an embedding model costs per request). Writes
bench/results/serving_<model>_<dataset>.json.
"""
from __future__ import annotations

import argparse
import json
import logging
import tempfile
import time
from pathlib import Path

import numpy as np

from _common import latencies_ms, results_dir
from bench_gnn_gfcf import ROOT, device_info


def main() -> None:
    import torch

    from gnn.train import train
    from kg.sources.lightgcn import snapshot_from_lightgcn
    from kgrec.config import TrainConfig
    from serving.recommender import Recommender

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data", default=str(ROOT.parent / "shared" / "datasets" / "gowalla"))
    ap.add_argument("--model", default="bspm", choices=["gfcf", "bspm"])
    ap.add_argument("--users", type=int, default=200, help="users timed one request at a time")
    ap.add_argument("--batch", type=int, default=1000, help="users in one recommend_many call")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")

    snap = snapshot_from_lightgcn(args.data)
    cfg = TrainConfig(model=args.model, ks=[20], device="cpu")
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        art = train(snap, cfg, Path(tmp), progress=False)
        train_s = time.perf_counter() - t
        metrics = json.loads((art / "metrics.json").read_text())
        t = time.perf_counter()
        rec = Recommender.load(art)
        load_s = time.perf_counter() - t
        rng = np.random.default_rng(0)
        users = [rec.user_ids[i] for i in rng.choice(len(rec.user_ids), args.users, replace=False)]
        batch = [rec.user_ids[i] for i in rng.choice(len(rec.user_ids), args.batch, replace=False)]
        items = [r.item_id for r in rec.recommend(users[0], 5)]
        filter_one = latencies_ms(lambda u: rec.recommend(u, 20), users)
        cold = latencies_ms(lambda _: rec.recommend_from_items(items, 20), users[:50])
        t = time.perf_counter()
        rec.recommend_many(batch, 20)
        many_s = time.perf_counter() - t
        scorer, rec.scorer = rec.scorer, None  # the baseline: the same artifact's embeddings, dot products
        embed_one = latencies_ms(lambda u: rec.recommend(u, 20), users)
        rec.scorer = scorer
    result = {"model": args.model, "dataset": Path(args.data).name, "path": "gnn.train.train -> serving.Recommender",
              "fit_and_evaluate_s": round(train_s, 1), "fit_s": round(metrics["fit_seconds"], 1),
              "test": {k: round(metrics["test"][k], 4) for k in ("recall@20", "ndcg@20")},
              "recommender_load_s": round(load_s, 2),
              "recommend_one_user": filter_one, "recommend_new_user_from_5_items": cold,
              "recommend_many": {"users": len(batch), "seconds": round(many_s, 2),
                                 "users_per_s": round(len(batch) / many_s)},
              "baseline_embedding_dot_product_one_user": embed_one,
              "ratio_filter_over_embedding_p50": round(filter_one["p50_ms"] / embed_one["p50_ms"], 1),
              "machine": device_info(torch.device("cpu")), "measured": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    out = results_dir() / f"serving_{args.model}_{result['dataset']}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
