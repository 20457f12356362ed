"""How much ranking signal a dataset's side information carries on its own (issue #6).

The ablation (``bench_ablation.py``) asks whether text and the knowledge graph lift LightGCN. This
benchmark asks the prior question: do they predict what users consume at all? Each side signal
defines an item-kNN recommender, and its ranking is compared with popularity and with collaborative
item-kNN in the same run:

- ``text kNN``: cosine of the items' MiniLM text embeddings (``text_embeddings.npz``);
- ``KG kNN``: cosine of the items' knowledge-graph neighbourhoods (binary vectors of the entities
  within two hops: item-entity edges, then entity-entity triples);
- ``CF kNN``: cosine of the items' training columns (classic item-based CF, for scale);
- ``popularity``.

Every item keeps its ``k`` most similar training items; a user's score for item i is the sum of the
similarities of i to the items in their training history. Ties break by popularity. Protocol: the
snapshot's own split (the ablation's, per-user ratio 70/10/20), test pairs of items with training
interactions, ranking those items with training and validation positives excluded; no hold-outs. Also reported:
the share of text and KG neighbour pairs that some user has both of in training, against
popularity-matched random pairs.

Usage::

    .venv/bin/python bench/bench_side_signal.py --dataset lastfm    # after bench_ablation.py built it

Writes ``bench/results/side_signal_<dataset>.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import logging
import sys
import time
from pathlib import Path
from typing import Callable

import numpy as np
import scipy.sparse as sp
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(ROOT))

from _common import write_result  # noqa: E402
from bench_ablation import DATASETS, latest_snapshot, load_text, rounded, symmetric_graph  # noqa: E402

logger = logging.getLogger("bench_side_signal")

SimBlock = Callable[[np.ndarray], torch.Tensor]  # rows -> (len(rows), I) similarities


def top_k_graph(sim_rows: SimBlock, num_items: int, k: int, candidates: np.ndarray,
                block: int = 1024) -> sp.csr_matrix:
    """(I, I) sparse matrix holding each item's ``k`` most similar candidates (positive similarities only)."""
    rows, cols, vals = [], [], []
    mask = torch.from_numpy(~candidates)
    for start in range(0, num_items, block):
        r = np.arange(start, min(start + block, num_items))
        s = sim_rows(r).float()
        s[torch.arange(len(r)), torch.from_numpy(r)] = 0.0  # never its own neighbour
        s[:, mask] = 0.0
        top = s.topk(min(k, num_items), dim=1)
        keep = (top.values > 0).numpy()
        rows.append(np.repeat(r, top.values.shape[1])[keep.ravel()])
        cols.append(top.indices.numpy()[keep])
        vals.append(top.values.numpy()[keep])
    return sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))),
                         shape=(num_items, num_items))


def unit_rows(m: sp.csr_matrix) -> sp.csr_matrix:
    """Rows scaled to unit L2 norm (zero rows stay zero)."""
    norm = np.sqrt(np.asarray(m.multiply(m).sum(1)).ravel())
    return sp.diags(1.0 / np.maximum(norm, 1e-12)) @ m


def kg_features(snapshot, num_entities: int) -> sp.csr_matrix:
    """(I, E) binary: the entities within two hops of each item (item-entity edges, then triples)."""
    from gnn.evaluate import to_csr
    item_ent, ent_ent = [], []
    for name, (src, dst) in snapshot.relation_types.items():
        e = np.asarray(snapshot.relations[name], np.int64).reshape(2, -1)
        if (src, dst) == ("item", "entity"):
            item_ent.append(e)
        elif (src, dst) == ("entity", "item"):
            item_ent.append(e[::-1])
        elif (src, dst) == ("entity", "entity"):
            ent_ent.append(e)
    if not item_ent:
        return sp.csr_matrix((snapshot.num_items, num_entities), dtype=np.float32)
    ie = np.concatenate(item_ent, 1)
    one_hop = to_csr(ie[0], ie[1], snapshot.num_items, num_entities).astype(np.float32)
    if not ent_ent:
        return one_hop
    ee = np.concatenate(ent_ent, 1)
    kg = symmetric_graph(ee, num_entities).astype(np.float32)
    two = one_hop + one_hop @ kg
    two.data[:] = 1.0
    return two.tocsr()


def pair_share(knn: sp.csr_matrix, cooc: sp.csr_matrix, rng: np.random.Generator) -> dict[str, float]:
    """Share of kNN pairs (i, j) co-consumed in training, and of popularity-matched random pairs."""
    c = knn.tocoo()
    if not c.nnz:
        return {"pairs": 0, "co_consumed": 0.0, "random": 0.0, "lift": 0.0}
    hit = np.asarray(cooc[c.row, c.col]).ravel() > 0
    rand = np.asarray(cooc[c.row, rng.permutation(c.col)]).ravel() > 0  # same items, neighbours shuffled
    return {"pairs": int(c.nnz), "co_consumed": round(float(hit.mean()), 4), "random": round(float(rand.mean()), 4),
            "lift": round(float(hit.mean() / max(rand.mean(), 1e-12)), 1)}


def main(argv: list[str] | None = None) -> int:
    from gnn.evaluate import evaluate, to_csr
    from kg.snapshot import Snapshot

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--snapshot", type=Path, help="an encoded snapshot (default: the ablation's latest)")
    ap.add_argument("--ks", default="10,50", help="neighbours kept per item, one row per value")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default=None, help="result name (default side_signal_<dataset>)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    torch.set_num_threads(args.threads)

    snap_dir = args.snapshot or latest_snapshot(args.dataset)
    if not (snap_dir / "text_embeddings.npz").is_file():
        ap.error(f"{snap_dir} has no encoded snapshot: run bench/bench_ablation.py --dataset {args.dataset} first")
    snap = Snapshot.load(snap_dir)
    text = load_text(snap_dir)
    U, I = snap.num_users, snap.num_items
    tr, va, te = snap.splits["train"], snap.splits["valid"], snap.splits["test"]
    train = to_csr(tr.user, tr.item, U, I).astype(np.float32)
    valid = to_csr(va.user, va.item, U, I)
    popularity = np.asarray(train.sum(0)).ravel()
    warm = popularity > 0
    truth = to_csr(te.user, te.item, U, I).multiply(warm[None, :]).tocsr()

    item_text = torch.nn.functional.normalize(torch.as_tensor(text["item"], dtype=torch.float32), dim=1)
    kg = unit_rows(kg_features(snap, snap.num_nodes("entity")))
    cols = unit_rows(train.T.tocsr())
    cooc = (train.T @ train).tocsr()
    signals: dict[str, SimBlock] = {
        "text kNN": lambda r: item_text[r] @ item_text.T,
        "KG kNN": lambda r: torch.from_numpy((kg[r] @ kg.T).toarray()),
        "CF kNN": lambda r: torch.from_numpy((cols[r] @ cols.T).toarray()),
    }
    tie = popularity / max(popularity.max(), 1) * 1e-6

    def ranker(item_scores: Callable[[np.ndarray], np.ndarray]) -> Callable[[torch.Tensor], torch.Tensor]:
        def score(users: torch.Tensor) -> torch.Tensor:
            s = item_scores(users.cpu().numpy()) + tie
            s[:, ~warm] = -np.inf
            return torch.from_numpy(s.astype(np.float32))
        return score

    def run(name: str, fn: Callable[[torch.Tensor], torch.Tensor], extra: dict | None = None) -> dict:
        t = time.perf_counter()
        m = evaluate(fn, train, truth, [20], I, exclude=valid)
        row = {"model": name, **rounded(m, ("recall@20", "ndcg@20", "hit@20", "coverage@20")),
               "eval_s": round(time.perf_counter() - t, 1), **(extra or {})}
        logger.info("%s", row)
        return row

    rng = np.random.default_rng(args.seed)
    rows = [run("popularity", ranker(lambda u: np.tile(popularity, (len(u), 1))))]
    for k in (int(v) for v in args.ks.split(",")):
        for name, sim in signals.items():
            t = time.perf_counter()
            knn = top_k_graph(sim, I, k, warm)
            build_s = round(time.perf_counter() - t, 1)
            extra = {"k": k, "build_s": build_s, "items_with_neighbours": int((np.diff(knn.indptr) > 0).sum())}
            if name != "CF kNN":
                extra["neighbour_pairs"] = pair_share(knn, cooc, rng)
            rows.append(run(f"{name} (k={k})", ranker(lambda u, w=knn: (train[u] @ w).toarray()), extra))

    data = {"users": U, "items": I, "warm_items": int(warm.sum()), "test_pairs_warm": int(truth.nnz),
            "items_with_kg": int((np.diff(kg.indptr) > 0).sum()),
            "train_interactions_of_kg_items": round(float(popularity[np.diff(kg.indptr) > 0].sum() / popularity.sum()), 4)}
    out = write_result(args.out or f"side_signal_{args.dataset}",
                       {"dataset": args.dataset, "snapshot": str(snap_dir), "data": data, "rows": rows,
                        "protocol": "snapshot split (per-user ratio 70/10/20, export seed 2020); test pairs of items "
                                    "with training interactions, ranking those items, training and validation positives excluded",
                        "command": "python " + " ".join([Path(__file__).name, *(argv or sys.argv[1:])])})
    print(f"{args.dataset}: {data}")
    print("| model | Recall@20 | NDCG@20 | HitRate@20 | neighbour pairs co-consumed (random, lift) |")
    print("|---|---|---|---|---|")
    for r in rows:
        p = r.get("neighbour_pairs")
        share = f"{p['co_consumed']:.4f} ({p['random']:.4f}, {p['lift']}x)" if p else "–"
        print(f"| {r['model']} | {r['recall@20']:.4f} | {r['ndcg@20']:.4f} | {r['hit@20']:.4f} | {share} |")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
