"""Free-text search on real data: MovieLens 100K, searching for a genre by its name.

Usage: python bench/bench_search_genres.py [--pairs 1000] [--candidates 100,300,1000]
after ``bench/bench_ablation.py --dataset ml-100k`` has built and encoded its snapshot
(``.kgrec/bench-snapshots/ablation-ml-100k-latest``; movie text = title, release date and genre
names). Writes bench/results/search_genres_ml-100k.json.

A LightGCN is trained on the snapshot's training split (64-d, 3 layers, L2 1e-3, early stopping on
validation NDCG@20) and served with its item text vectors. Then for up to ``--pairs`` (user, genre)
pairs, a genre among those of the user's test movies, the genre's name is searched for the user.
The test movies of that genre are the truth; training and validation movies are excluded (the
protocol of the test figures in ``gnn.train``). Per ranker, in the same run: hits@10 (the share of
the truth, at most 10, in the list), the share of results of the searched genre, and the mean text
cosine of the results to the query. Rankers: text only; ``search`` for the user (rank fusion of text
and model over the best text matches, swept over ``--candidates``); the same candidates ordered by
the model alone; and the model alone over all movies (``recommend``, which ignores the query).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _common import write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from encoders.encode import query_encoder_setting
    from gnn.artifact import TextIndex
    from gnn.train import train
    from kg.snapshot import Snapshot
    from kgrec.config import EncoderConfig, TrainConfig
    from serving.recommender import Recommender

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--snapshot", default=str(ROOT / ".kgrec" / "bench-snapshots" / "ablation-ml-100k-latest"))
    ap.add_argument("--pairs", type=int, default=1000)
    ap.add_argument("--candidates", default="100,300,1000")
    ap.add_argument("--seed", type=int, default=2020)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    k = 10

    snap_dir = Path(args.snapshot)
    snap = Snapshot.load(snap_dir)
    with np.load(snap_dir / "text_embeddings.npz") as z:
        item_text = z["item"]
    cfg = TrainConfig(model="lightgcn", weight_decay=1e-3, epochs=400, patience=10, device="cpu", seed=args.seed)
    with tempfile.TemporaryDirectory() as tmp:
        t = time.perf_counter()
        art = train(snap, cfg, Path(tmp), progress=False, publish_current=False,
                    text_index=TextIndex(item_text, query_encoder_setting(snap_dir, EncoderConfig())))
        train_s = time.perf_counter() - t
        rec = Recommender.load(art)
        trained = {"train_s": round(train_s, 1), "test": {m: round(v, 4) for m, v in
                   __import__("json").loads((art / "metrics.json").read_text())["test"].items()
                   if m in ("recall@20", "ndcg@20")}}
    rec.text_search.warm()
    valid = snap.splits["valid"]
    rec._seen = (rec._train + sp.csr_matrix((np.ones(len(valid), np.float32), (valid.user, valid.item)),
                                            shape=rec._train.shape)).tocsr()

    genre_rel = snap.relations["has:genre"]  # (2, E): item row -> entity row
    genres_of = [set() for _ in range(snap.num_items)]
    for i, e in zip(genre_rel[0].tolist(), genre_rel[1].tolist()):
        genres_of[i].add(e)
    test = snap.splits["test"]
    pairs = []
    for u in np.unique(test.user).tolist():
        mine = test.item[test.user == u].tolist()
        for g in sorted({g for i in mine for g in genres_of[i]}):
            pairs.append((u, g, {i for i in mine if g in genres_of[i]}))
    rng = np.random.default_rng(args.seed)
    pairs = [pairs[j] for j in np.sort(rng.choice(len(pairs), min(args.pairs, len(pairs)), replace=False))]

    sizes = [int(c) for c in args.candidates.split(",")]
    names = (["text only"] + [f"search for the user, {c} candidates" for c in sizes]
             + [f"{sizes[0]} candidates by the model alone", "model alone (recommend)"])
    scores: dict[str, dict[str, list[float]]] = {n: {"hits": [], "genre": [], "cosine": []} for n in names}
    row = {i: j for j, i in enumerate(rec.item_ids)}
    for u, g, truth in pairs:
        user, query = snap.ids["user"][u], snap.entity_names[g]
        relevance = rec.text_search.relevance(query)
        seen = rec._seen.indices[rec._seen.indptr[u]:rec._seen.indptr[u + 1]].astype(np.int64)
        masked = relevance.clone()
        masked[torch.from_numpy(seen)] = float("-inf")
        cand = torch.topk(masked, sizes[0]).indices
        lists = {"text only": torch.topk(masked, k).indices.tolist(),
                 f"{sizes[0]} candidates by the model alone":
                     cand[torch.topk(rec.item_emb[cand] @ rec.user_emb[u], k).indices].tolist(),
                 "model alone (recommend)": [row[r.item_id] for r in rec.recommend(user, k)]}
        for c in sizes:
            rec.search_candidates = c
            lists[f"search for the user, {c} candidates"] = [row[r.item_id] for r in rec.search(query, k, user_id=user)]
        for name, found in lists.items():
            scores[name]["hits"].append(len(truth & set(found)) / min(k, len(truth)))
            scores[name]["genre"].append(float(np.mean([g in genres_of[i] for i in found])))
            scores[name]["cosine"].append(float(relevance[torch.tensor(found)].mean()))
    results = {n: {"hits@10": round(statistics.fmean(v["hits"]), 4), "genre_precision@10": round(statistics.fmean(v["genre"]), 4),
                   "mean_text_cosine@10": round(statistics.fmean(v["cosine"]), 4)} for n, v in scores.items()}
    payload = {"snapshot": str(snap_dir.resolve()), "model": trained, "pairs": len(pairs),
               "users": len({u for u, _, _ in pairs}), "results": results,
               "command": "python bench/bench_search_genres.py " + " ".join(f"--{a} {v}" for a, v in vars(args).items())}
    for name, r in results.items():
        print(f"{name:40s} {r}")
    print(write_result("search_genres_ml-100k", payload))


if __name__ == "__main__":
    main()
