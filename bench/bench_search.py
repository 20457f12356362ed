"""Free-text search (``Recommender.search``) on the demo catalogue: does the text decide the topic,
does the model make it personal, and what does a query cost.

Usage: python bench/bench_search.py [--model DIR] [--scale 100000,1000000]
after ``make demo`` (its snapshot ``.kgrec/snapshots/demo-latest`` and model ``.kgrec/models/current``;
the snapshot's planted communities are the ground truth). Writes bench/results/search_demo.json.

- Relevance: every query node's own text, searched without a user; precision@10 = the share of
  results from the query's community (the community of its ``relevant`` items).
- Personalisation: every (user, query) ``searched`` pair; hits@10 = the user's held-out test items
  among the results (training and validation items are excluded, as in ``gnn.train``'s test), and
  the mean cosine of the results' text to the query. Rankers in the same run: text only, the fused
  ranking ``search(text, user_id=...)``, the same candidates ordered by the model alone, and the
  model alone over all items (``recommend``, which ignores the text).
- Across topics: 200 users, each searching every community's words; the share of results from the
  query's community, and from the user's own.
- Latency per request, one at a time, beside ``recommend`` (the baseline in the same run); the
  query's encoding alone; and scoring N random unit text vectors against an encoded query at
  larger catalogue sizes (``--scale``; the encoding comes on top).
"""
from __future__ import annotations

import argparse
import logging
import os
import statistics
import time
from collections import Counter
from pathlib import Path

import numpy as np
import scipy.sparse as sp

from _common import latencies_ms, write_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    import torch

    from kg.snapshot import Snapshot
    from kg.synthetic import TOPICS
    from serving.recommender import Recommender
    from serving.search import TextSearch

    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model", default=str(ROOT / ".kgrec" / "models" / "current"))
    ap.add_argument("--scale", default="100000,1000000", help="catalogue sizes for the query-cost rows")
    ap.add_argument("--k", type=int, default=10)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.manual_seed(0)

    t = time.perf_counter()
    rec = Recommender.load(args.model)
    load_s = time.perf_counter() - t
    if rec.text_search is None:
        raise SystemExit(f"{args.model} has no item text vectors: run `make demo` first")
    t = time.perf_counter()
    rec.text_search.warm()
    encoder_s = time.perf_counter() - t
    # the evaluation protocol of gnn.train: training and validation items are excluded, so held-out
    # test items can be found (the served model excludes every interaction of the snapshot)
    snap = Snapshot.load(rec.meta["snapshot"])
    valid = snap.splits["valid"]
    rec._seen = (rec._train + sp.csr_matrix((np.ones(len(valid), np.float32), (valid.user, valid.item)),
                                            shape=rec._train.shape)).tocsr()
    item_row = {i: k for k, i in enumerate(snap.ids["item"])}
    assert [snap.ids["item"][k] for k in range(len(rec.item_ids))] == rec.item_ids
    relevant = snap.relations["relevant"]  # (2, E): query row -> item row
    searched = snap.relations["searched"]  # user row -> query row
    # the community of an item is its category entity; of a query, its relevant items' majority
    cat_rel = next(r for r, (s, d) in snap.relation_types.items() if s == "item" and d == "entity" and "category" in r)
    cat = snap.relations[cat_rel]
    item_comm = np.full(snap.num_items, -1)
    item_comm[cat[0]] = cat[1]
    query_comm = {q: Counter(item_comm[relevant[1][relevant[0] == q]].tolist()).most_common(1)[0][0]
                  for q in np.unique(relevant[0])}
    k = args.k

    def rows(found) -> np.ndarray:
        return np.array([item_row[r.item_id] for r in found], dtype=np.int64)

    # relevance: every query's text, no user
    precision = [float(np.mean(item_comm[rows(rec.search(snap.query_texts[q], k))] == c)) for q, c in query_comm.items()]

    # personalisation: the searched pairs
    test = snap.splits["test"]
    rankers = {"text only": [], "search (text + model)": [], "candidates by the model alone": [],
               "model only (recommend)": []}
    cosine = {name: [] for name in rankers}
    comm_share = {name: [] for name in rankers}
    for u, q in zip(searched[0].tolist(), searched[1].tolist()):
        user = snap.ids["user"][u]
        truth = set(test.item[test.user == u].tolist())
        if not truth or q not in query_comm:
            continue
        relevance = rec.text_search.relevance(snap.query_texts[q])
        seen = rec.seen.indices[rec.seen.indptr[rec.user_index[user]]:rec.seen.indptr[rec.user_index[user] + 1]]
        relevance[torch.from_numpy(seen.astype(np.int64))] = float("-inf")
        cand = torch.topk(relevance, rec.search_candidates).indices
        by_model = cand[torch.topk(rec.item_emb[cand] @ rec.user_emb[rec.user_index[user]], k).indices]
        lists = {"text only": torch.topk(relevance, k).indices.numpy(),
                 "candidates by the model alone": by_model.numpy(),
                 "search (text + model)": rows(rec.search(snap.query_texts[q], k, user_id=user)),
                 "model only (recommend)": rows(rec.recommend(user, k))}
        for name, found in lists.items():
            rankers[name].append(len(truth & set(found.tolist())) / min(k, len(truth)))
            comm_share[name].append(float(np.mean(item_comm[found] == query_comm[q])))
            cosine[name].append(float(relevance[torch.from_numpy(found)].mean()))
    personal = {name: {"hits@10": round(statistics.fmean(v), 4),
                       "query_community_precision@10": round(statistics.fmean(comm_share[name]), 4),
                       "mean_text_cosine@10": round(statistics.fmean(cosine[name]), 4)}
                for name, v in rankers.items()}
    personal["pairs"] = len(rankers["text only"])

    # across topics: every user of the first 200 searches each community's first two words
    topics = {int(c): " ".join(TOPICS[snap.entity_names[c]][:2]) for c in np.unique(item_comm)
              if snap.entity_names[c] in TOPICS}
    user_comm = {}
    train = snap.splits["train"]
    for u in range(min(200, snap.num_users)):
        mine = item_comm[train.item[train.user == u]]
        user_comm[u] = Counter(mine.tolist()).most_common(1)[0][0]
    cross = {"query_community": [], "user_community": []}
    for u, uc in user_comm.items():
        for c, words in topics.items():
            if c == uc:
                continue
            found = rows(rec.search(words, k, user_id=snap.ids["user"][u]))
            cross["query_community"].append(float(np.mean(item_comm[found] == c)))
            cross["user_community"].append(float(np.mean(item_comm[found] == uc)))
    across = {key: round(statistics.fmean(v), 4) for key, v in cross.items()}
    across["requests"] = len(cross["query_community"])

    # latency, one request at a time, beside recommend
    users = [snap.ids["user"][u] for u in range(min(200, snap.num_users))]
    texts = [snap.query_texts[q % snap.num_nodes("query")] for q in range(len(users))]
    latency = {"recommend (baseline)": latencies_ms(lambda u: rec.recommend(u, k), users),
               "search, no user": latencies_ms(lambda s: rec.search(s, k), texts),
               "search, for a user": latencies_ms(lambda p: rec.search(p[0], k, user_id=p[1]), list(zip(texts, users))),
               "encoding the query alone": latencies_ms(rec.text_search.query_vector, texts)}
    for row in latency.values():
        row["x_recommend"] = round(row["p50_ms"] / latency["recommend (baseline)"]["p50_ms"], 2)

    # scoring larger catalogues: random unit vectors in the encoder's dimension, queries encoded beforehand
    scale = {}
    rng = np.random.default_rng(0)
    encoded = [rec.text_search.query_vector(t) for t in texts[:50]]
    for n in [int(s) for s in args.scale.split(",") if s]:
        vectors = rng.standard_normal((n, rec.text_search.item_text.shape[1]), dtype=np.float32)
        vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        big = TextSearch(vectors.astype(np.float16), rec.text_search.setting)
        scale[n] = {**latencies_ms(lambda q: torch.topk(big.item_text @ q, k), encoded),
                    "text_vectors_mib": round(big.item_text.numel() * 4 / 2**20, 1)}
        del big, vectors

    payload = {"model": rec.meta.get("model"), "version": rec.version, "items": len(rec.item_ids),
               "users": len(rec.user_ids), "queries": snap.num_nodes("query"), "encoder": rec.text_search.setting,
               "candidates": rec.search_candidates, "load_s": round(load_s, 2), "encoder_load_s": round(encoder_s, 2),
               "relevance": {"queries": len(precision), "community_precision@10": round(statistics.fmean(precision), 4),
                             "min": round(min(precision), 4)},
               "personalisation": personal, "across_topics": across, "latency": latency,
               "query_cost_at_scale": scale,
               "command": "python bench/bench_search.py " + " ".join(f"--{a} {v}" for a, v in vars(args).items())}
    out = write_result("search_demo", payload)
    for key in ("relevance", "personalisation", "across_topics", "latency", "query_cost_at_scale"):
        print(key, payload[key])
    print(out)


if __name__ == "__main__":
    main()
