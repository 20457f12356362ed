"""Ablation on data with text and a knowledge graph (issue #6): id-only LightGCN, text-only,
fused, fused + R-GCN, with GF-CF and popularity as baselines; warm test, full test and cold-start slices.

Usage::

    .venv/bin/python bench/bench_ablation.py --dataset ml-100k [--budget-s 100] [--rebuild]

The snapshot is built through the product path, once per dataset, and reused afterwards: the
source is read by ``kg.sources`` (``kgrec ingest lastfm|ml100k``), written into the benches' own managed
Neo4j (``.kgrec/neo4j-bench-ablation``, ports 7694/7481, wiped first; never the demo server nor
NEO4J_URI's, nor another bench's) with
``kg.ingest.ingest``, exported with ``kg.export.export_snapshot`` (per-user ratio split 70/10/20,
seed 2020) to ``.kgrec/bench-snapshots/ablation-<dataset>-latest`` and encoded with
``encoders.encode.encode_snapshot`` (MiniLM, cached). ``--snapshot DIR`` uses any encoded snapshot.

Protocol: ``--train-fraction`` first keeps that share of each user's training interactions
(``gnn.coldstart.thin_train``, seeded; 1 keeps all). ``gnn.coldstart.hold_out_items`` then removes
``--cold-fraction`` of the items (seeded) with all their interactions and edges; every model trains
on the rest with ``gnn.train.train`` (same configuration, same time budget, early stopping on
validation NDCG@20). Reported per row:

- ``warm``: test pairs of the training view's items, ranking those items (what ``train`` reports);
  some of them have no training pair (all their pairs in validation/test or with held-out users),
  which LightGCN scores with untrained embeddings and the text models from text;
- ``warm_trained``: the ``warm`` pairs whose item has at least one training pair, ranking only
  those items: warm ranking with no cold start in it (added in session 24);
- ``test``: the full catalogue's test pairs (original test split + every pair of a held-out item),
  ranking all items; held-out items (and any item without training pairs) get the inductive
  embedding of ``gnn.coldstart`` (ridge map from [item text, mean attribute-entity text] to the
  trained item embeddings); popularity and GF-CF score them 0;
- ``cold``: the ``test`` pairs whose item has no training interaction, ranking all items;
- ``cold_only``: the same pairs ranking only those unseen items among themselves;
- ``few``: the ``test`` pairs whose item has at most ``--few`` training interactions (unseen included);
- ``new_users``: ``gnn.coldstart.hold_out_users`` also removes ``--user-fraction`` of the users from
  training; each is folded in from their first ``--shots`` interactions (mean item embedding; GF-CF
  and popularity score the raw row) and evaluated on the rest of their history, ranking the
  training items. Every other slice leaves these users out.
- ``new_users_0`` (with ``--new-user-relations friend``): the held-out users keep their edges of
  those relations (they bring their friends, not their history) and are scored with no interaction
  at all, on their whole history, ranking the training items: a trained model scores them with the
  user embedding it learnt (only meaningful when ``--graph-relations`` propagates over those
  edges); popularity ranks by count; an extra row, ``friends' items``, scores each item by how many
  of the user's friends have it in training (ties broken by popularity).
- ``new_users_0_foldin`` (with ``--friend-fold-in friend``): the same users, left out of training
  with their edges (the default protocol), each scored after training from the mean of their
  friends' trained user embeddings, as ``POST /recommend/cold`` with ``friend_ids`` does.

Writes ``bench/results/ablation_<dataset>.json`` and prints a table.
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any, Callable

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import neo4j_config, write_result  # noqa: E402

sys.path.insert(0, str(ROOT))

logger = logging.getLogger("bench_ablation")

DATASETS = {"ml-100k": "ml100k", "lastfm": "lastfm"}
SNAPSHOTS = ROOT / ".kgrec" / "bench-snapshots"
# name -> (TrainConfig.model, TrainConfig.fusion); one trained row each
TRAINED = {"lightgcn (id only)": ("lightgcn", "sum"), "text only": ("fused", "text"), "fused": ("fused", "sum"),
           "fused + R-GCN": ("kgfused", "sum"), "fused (gate)": ("fused", "gate"), "fused (concat)": ("fused", "concat"),
           "fused + R-GCN (gate)": ("kgfused", "gate")}
DEFAULT_ROWS = ("popularity", "gf-cf", "lightgcn (id only)", "text only", "fused", "fused + R-GCN")


def build_snapshot(dataset: str, data_dir: Path, out_dir: Path, stop_server: bool) -> tuple[Path, dict[str, float]]:
    """Source -> Neo4j (wiped) -> snapshot -> text vectors, timing each stage."""
    from encoders.encode import encode_snapshot
    from kg.connection import connect
    from kg.export import export_snapshot
    from kg.ingest import ingest
    from kg.neo4j_server import ManagedNeo4j
    from kg.schema import apply_schema, wipe
    from kg.sources import load_source
    from kgrec.config import EncoderConfig, ExportConfig, IngestConfig

    timings: dict[str, float] = {}
    neo = neo4j_config(home="neo4j-bench-ablation", bolt_port=7694, http_port=7481)  # its own: it wipes it
    server = ManagedNeo4j(neo)
    started = False
    t = time.perf_counter()
    if server is not None:
        _, started = server.start()
    timings["neo4j_start_s"] = round(time.perf_counter() - t, 1)
    try:
        t = time.perf_counter()
        loaded = load_source(DATASETS[dataset], data_dir, None, IngestConfig())
        timings["read_s"] = round(time.perf_counter() - t, 1)
        with connect(neo) as g:
            t = time.perf_counter()
            wipe(g)
            apply_schema(g)
            report = ingest(g, loaded.records, IngestConfig(), progress=False)
            timings["ingest_s"] = round(time.perf_counter() - t, 1)
            logger.info("ingested %s: %s", dataset, {k: v for k, v in report.items() if isinstance(v, (int, float))})
            t = time.perf_counter()
            snap_dir = export_snapshot(g, ExportConfig(out_dir=out_dir, split="ratio", valid_ratio=0.1, test_ratio=0.2,
                                                       seed=2020), f"ablation-{dataset}")
            timings["export_s"] = round(time.perf_counter() - t, 1)
    finally:
        if server is not None and started and stop_server:
            server.stop()
    t = time.perf_counter()
    encode_snapshot(snap_dir, EncoderConfig(cache_dir=ROOT / ".kgrec" / "cache" / "text", device="cpu"))
    timings["encode_s"] = round(time.perf_counter() - t, 1)
    return snap_dir, timings


def load_text(snapshot_dir: Path) -> dict[str, np.ndarray]:
    """``text_embeddings.npz``'s arrays (item, query, entity)."""
    path = snapshot_dir / "text_embeddings.npz"
    if not path.is_file():
        raise FileNotFoundError(f"{path} missing: run `kgrec encode {snapshot_dir}`")
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def latest_snapshot(dataset: str) -> Path:
    """Where the ablation keeps the encoded snapshot of ``dataset`` (a link to its latest build)."""
    return SNAPSHOTS / f"ablation-{dataset}-latest"


def symmetric_graph(edges: np.ndarray, num_nodes: int) -> "sp.csr_matrix":
    """(N, N) binary, symmetric adjacency of edges (2, E) between nodes of one type (users, entities)."""
    from gnn.evaluate import to_csr
    e = np.asarray(edges, np.int64).reshape(2, -1)
    return to_csr(np.r_[e[0], e[1]], np.r_[e[1], e[0]], num_nodes, num_nodes)


def rounded(m: dict[str, float], keys: tuple[str, ...] = ("recall@20", "ndcg@20")) -> dict[str, float]:
    return {k: round(float(m[k]), 4) for k in keys if k in m} | {"users": int(m.get("num_users", 0))}


def evaluate_row(score_full: Callable, score_view: Callable, score_new_users: Callable, mats: dict, view_mats: dict,
                 num_warm: int, few: int) -> dict[str, Any]:
    """Warm, full-test, cold-item and cold-user metrics of one model (see module docstring)."""
    import scipy.sparse as sp
    import torch

    from gnn.coldstart import evaluate_item_slice
    from gnn.evaluate import evaluate

    ks = [20]
    warm = evaluate(score_view, view_mats["train"], view_mats["test"], ks, num_warm, exclude=view_mats["valid"])
    trained = np.asarray(view_mats["train"].sum(0)).ravel() > 0  # view items with a training pair
    untrained = torch.from_numpy(~trained)
    truth_trained = view_mats["test"] @ sp.diags(trained.astype(np.float32))
    truth_trained.eliminate_zeros()
    warm_trained = evaluate(lambda u: score_view(u).float().masked_fill(untrained, -float("inf")),
                            view_mats["train"], truth_trained, ks, num_warm, exclude=view_mats["valid"])
    full = evaluate(score_full, mats["train"], mats["test"], ks, mats["train"].shape[1], exclude=mats["valid"])
    cold = evaluate_item_slice(score_full, mats["train"], mats["test"], 0, ks, exclude=mats["valid"])
    cold_only = evaluate_item_slice(score_full, mats["train"], mats["test"], 0, ks, exclude=mats["valid"],
                                    slice_only=True)
    few_m = evaluate_item_slice(score_full, mats["train"], mats["test"], few, ks, exclude=mats["valid"])
    new_users = evaluate(score_new_users, view_mats["support"], view_mats["truth"], ks, num_warm)
    return {"warm": rounded(warm), "warm_trained": rounded(warm_trained), "test": rounded(full),
            "cold": rounded(cold), "cold_only": rounded(cold_only), f"few<={few}": rounded(few_m),
            "new_users": rounded(new_users), "cold_pairs": int(cold["num_pairs"]), "few_pairs": int(few_m["num_pairs"])}


def main(argv: list[str] | None = None) -> int:
    import torch

    from gnn.coldstart import (embedding_scorer, fold_in_users, hold_out_items, hold_out_users,
                               inductive_item_embeddings, item_side_features, item_train_counts, popularity_scorer,
                               snapshot_item_entity_edges, split_matrices, text_for_view, thin_train)
    from gnn.evaluate import to_csr
    from gnn.models.gfcf import GFCF
    from gnn.train import has_item_ids_beside_text, train
    from kg.snapshot import Snapshot
    from kgrec.config import TrainConfig

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dataset", choices=sorted(DATASETS), required=True)
    ap.add_argument("--datasets-dir", type=Path, default=ROOT.parent / "shared" / "datasets")
    ap.add_argument("--snapshot", type=Path, help="an encoded snapshot to use instead of building one")
    ap.add_argument("--rebuild", action="store_true", help="re-ingest, re-export and re-encode")
    ap.add_argument("--keep-neo4j", action="store_true", help="leave the bench Neo4j running after building")
    ap.add_argument("--cold-fraction", type=float, default=0.1)
    ap.add_argument("--few", type=int, default=5)
    ap.add_argument("--user-fraction", type=float, default=0.1, help="share of users held out as new users")
    ap.add_argument("--train-fraction", type=float, default=1.0,
                    help="keep this share of each user's training interactions (a sparsity study)")
    ap.add_argument("--shots", type=int, default=3, help="interactions a held-out user reveals (fold-in)")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch CPU threads (1 is much faster than 2 on a contended 2-core machine)")
    ap.add_argument("--budget-s", type=float, default=120.0, help="training time budget of each trained row")
    ap.add_argument("--epochs", type=int, default=200)
    ap.add_argument("--patience", type=int, default=10)
    ap.add_argument("--lr", type=float, default=5e-3)
    ap.add_argument("--batch-size", type=int, default=2048)
    ap.add_argument("--dim", type=int, default=64)
    ap.add_argument("--layers", type=int, default=3)
    ap.add_argument("--kg-layers", type=int, default=1)
    ap.add_argument("--kg-bases", type=int, default=0)
    ap.add_argument("--kg-users", action="store_true",
                    help="kgfused: add the KG term to user embeddings too (default: items only, as TrainConfig)")
    ap.add_argument("--no-entity-text", action="store_true",
                    help="kgfused: id embeddings only for entities (their names may be bare ids, e.g. Freebase)")
    ap.add_argument("--graph-relations", default="",
                    help="comma-separated user/item relations (e.g. FRIEND) added to the LightGCN graph of every "
                         "trained row (TrainConfig.graph_relations)")
    ap.add_argument("--new-user-relations", default="",
                    help="comma-separated relations (e.g. friend) whose edges the held-out users keep; adds the "
                         "new_users_0 slice (no interactions) and the friends' items row")
    ap.add_argument("--friend-fold-in", default="",
                    help="a user-user relation (e.g. friend): add new_users_0_foldin, each held-out user scored "
                         "from the mean of their friends' trained embeddings")
    ap.add_argument("--weight-decay", type=float, default=1e-4)
    ap.add_argument("--id-weight-decay", type=float, default=0.0,
                    help="extra L2 on the item id embeddings of the rows with ids beside text (fused, kgfused; "
                         "TrainConfig.id_weight_decay). 0 here, where TrainConfig's default is 1e-3 for fused: "
                         "the ablation's fused rows are plain fused, as in every committed result")
    ap.add_argument("--rows", default=",".join(DEFAULT_ROWS),
                    help=f"comma-separated rows to run, from popularity, gf-cf, {', '.join(TRAINED)}")
    ap.add_argument("--seed", type=int, default=2020)
    ap.add_argument("--device", default="cpu", help="where the trained rows train (cpu, cuda, auto)")
    ap.add_argument("--out", default=None, help="result name (default ablation_<dataset>)")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    torch.set_num_threads(args.threads)
    t_all = time.perf_counter()

    build: dict[str, Any] = {}
    snap_dir = args.snapshot
    if snap_dir is None:
        out_dir, latest = SNAPSHOTS, latest_snapshot(args.dataset)
        if args.rebuild or not (latest / "text_embeddings.npz").is_file():
            data_dir = args.datasets_dir / args.dataset
            if not data_dir.is_dir():
                print(f"skipped: {data_dir} is absent (licensed data stays out of the repo)")
                return 0
            snap_dir, build = build_snapshot(args.dataset, data_dir, out_dir, stop_server=not args.keep_neo4j)
        else:
            snap_dir = latest.resolve()
            build = {"reused": str(snap_dir)}
    snap = thin_train(Snapshot.load(snap_dir), args.train_fraction, seed=args.seed)
    text = load_text(snap_dir)
    split = hold_out_items(snap, args.cold_fraction, seed=args.seed)
    kept = [r for r in args.new_user_relations.split(",") if r]
    users = hold_out_users(split.snapshot, args.user_fraction, shots=args.shots, seed=args.seed, keep_relations=kept)
    view = users.snapshot
    U = snap.num_users
    mats = split_matrices(split, U, drop_users=users.cold_users)
    vs = {s: view.splits[s] for s in ("train", "valid", "test")}
    vs.update(support=users.support, truth=users.truth)
    view_mats = {s: to_csr(vs[s].user, vs[s].item, U, view.num_items) for s in vs}
    known = item_train_counts(mats["train"]) > 0
    feats = item_side_features(text["item"], text.get("entity"), snapshot_item_entity_edges(snap))
    data = {"snapshot": str(snap_dir), "users": U, "items": snap.num_items,
            "entities": snap.num_nodes("entity"), "queries": snap.num_nodes("query"),
            "relations": {r: int(e.shape[1]) for r, e in snap.relations.items() if e.shape[1]},
            "interactions": {s: len(snap.splits[s]) for s in ("train", "valid", "test")},
            "held_out_items": int(len(split.cold_items)), "items_without_train_pairs": int((~known).sum()),
            "held_out_users": int(len(users.cold_users)), "new_user_support": len(users.support),
            "new_user_truth": len(users.truth),
            "full_test_pairs": len(split.test), "text_dim": int(text["item"].shape[1])}
    logger.info("data: %s", data)

    rows_wanted = [r.strip() for r in args.rows.split(",") if r.strip()]
    results: dict[str, Any] = {}
    warm_index = split.warm_items

    def view_scorer(full_scores: Callable) -> Callable:
        idx = torch.from_numpy(warm_index)
        return lambda users: full_scores(users)[:, idx]

    def zero_shot(score_view: Callable, key: str = "new_users_0") -> dict[str, Any]:
        """The held-out users, no interaction revealed, all their history as truth."""
        if not kept and key == "new_users_0":
            return {}
        from gnn.evaluate import evaluate
        truth = view_mats["support"] + view_mats["truth"]
        return {key: rounded(evaluate(score_view, to_csr(np.zeros(0, np.int64), np.zeros(0, np.int64), U,
                                                         view.num_items), truth, [20], view.num_items))}

    def friend_fold_in(ue: np.ndarray) -> np.ndarray:
        """Each held-out user's embedding replaced by the mean of their trained (not held-out) friends'."""
        import scipy.sparse as sp
        warm = np.ones(U, np.float32)
        warm[users.cold_users] = 0
        adj = symmetric_graph(snap.relations[args.friend_fold_in], U)[users.cold_users] @ sp.diags(warm)
        out = ue.copy()
        out[users.cold_users] = np.asarray(adj @ ue) / np.maximum(np.asarray(adj.sum(1)), 1)
        return out

    if "popularity" in rows_wanted:
        t = time.perf_counter()
        pop = popularity_scorer(mats["train"], seed=args.seed)
        results["popularity"] = {**evaluate_row(pop, view_scorer(pop), view_scorer(pop), mats, view_mats, view.num_items,
                                                args.few), **zero_shot(view_scorer(pop)),
                                 "seconds": round(time.perf_counter() - t, 1)}
    if kept:  # the social baseline of new_users_0: count the user's friends who have each item
        links = [view.relations[r] for r in kept if view.relation_types[r] == ("user", "user")]
        friends = symmetric_graph(np.concatenate(links, 1) if links else np.zeros((2, 0), np.int64), U)
        by_friends = friends @ view_mats["train"]
        tie = torch.from_numpy(np.asarray(view_mats["train"].sum(0), np.float32).ravel())
        tie = tie / (tie.max() + 1)  # < 1: breaks ties only

        def friends_items(u: "torch.Tensor") -> "torch.Tensor":
            return torch.from_numpy(by_friends[u.numpy()].toarray().astype(np.float32)) + tie

        results["friends' items"] = zero_shot(friends_items)
    if "gf-cf" in rows_wanted:
        t = time.perf_counter()
        gf = GFCF(k=min(256, min(mats["train"].shape) - 1), alpha=0.3).fit(mats["train"])
        # new users: GF-CF scores a user from their raw row, so refit with the support rows added
        gf_new = GFCF(k=min(256, min(mats["train"].shape) - 1), alpha=0.3).fit(view_mats["train"] + view_mats["support"])
        results["gf-cf"] = {**evaluate_row(gf.score, view_scorer(gf.score), gf_new.score, mats, view_mats,
                                           view.num_items, args.few),
                            "fit_s": round(gf.fit_seconds, 1), "seconds": round(time.perf_counter() - t, 1)}
    view_text = text_for_view(text, split)
    if args.no_entity_text:
        view_text = {k: v for k, v in view_text.items() if k != "entity"}
    for name, (model, fusion) in TRAINED.items():
        if name not in rows_wanted:
            continue
        kg = ({"kg_layers": args.kg_layers, "kg_bases": args.kg_bases, "kg_users": args.kg_users}
              if model == "kgfused" else {})  # the others read none of them (and training warns of them)
        cfg = TrainConfig(model=model, fusion=fusion, embedding_dim=args.dim, num_layers=args.layers, **kg,
                          graph_relations=[r for r in args.graph_relations.split(",") if r], lr=args.lr,
                          weight_decay=args.weight_decay,
                          id_weight_decay=args.id_weight_decay if has_item_ids_beside_text(model, fusion) else 0.0,
                          batch_size=args.batch_size, epochs=args.epochs,
                          patience=args.patience, ks=[20], seed=args.seed, device=args.device)
        text_arg = None if model == "lightgcn" else (view_text if model == "kgfused" else view_text["item"])
        t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            art = train(view, cfg, Path(tmp), text_arg, max_time_s=args.budget_s, progress=False)
            metrics = json.loads((art / "metrics.json").read_text())
            with np.load(art / "embeddings.npz") as z:
                ue, ie_view = z["user"], z["item"]
        train_s = time.perf_counter() - t
        ie, ridge = inductive_item_embeddings(split.to_full(ie_view), feats, known)
        ie_warm = ie[warm_index]  # the view's items, inductive rows for those without training pairs
        new_fn = embedding_scorer(fold_in_users(ie_warm, view_mats["support"]), ie_warm)
        row = evaluate_row(embedding_scorer(ue, ie), embedding_scorer(ue, ie_view), new_fn, mats, view_mats,
                           view.num_items, args.few)
        row.update(zero_shot(embedding_scorer(ue, ie_view)))
        if args.friend_fold_in:
            row.update(zero_shot(embedding_scorer(friend_fold_in(ue), ie_view), "new_users_0_foldin"))
        hist = metrics["history"]
        results[name] = {**row, "model": model, "fusion": fusion, "best_epoch": metrics["best_epoch"],
                         "epochs_run": len(hist), "train_s": round(train_s, 1),
                         "mean_epoch_s": round(float(np.mean([h["train_s"] for h in hist])), 2),
                         "ridge_alpha": ridge.alpha, "valid_ndcg@20": round(metrics["best_score"], 4),
                         "config": {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(cfg).items()}}
        logger.info("%s: %s", name, results[name])

    payload = {"dataset": args.dataset, "data": data, "build": build,
               "protocol": {"split": "per-user ratio 70/10/20 (export seed 2020)", "train_fraction": args.train_fraction,
                            "cold_fraction": args.cold_fraction,
                            "cold_seed": args.seed, "few": args.few, "user_fraction": args.user_fraction,
                            "shots": args.shots, "new_user_relations": kept, "friend_fold_in": args.friend_fold_in,
                            "threads": args.threads, "device": args.device, "budget_s_per_trained_row": args.budget_s,
                            "early_stopping": f"valid ndcg@20, patience {args.patience}"},
               "rows": results, "total_s": round(time.perf_counter() - t_all, 1),
               "command": "python bench/bench_ablation.py " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = write_result(args.out or f"ablation_{args.dataset}", payload)
    print(table(results, args.few))
    print(f"wrote {out}")
    return 0


def table(results: dict[str, Any], few: int) -> str:
    """Markdown table of Recall@20 / NDCG@20 per row and slice."""
    cols = ("warm", "warm_trained", "test", "cold", "cold_only", f"few<={few}", "new_users")
    cols += tuple(c for c in ("new_users_0", "new_users_0_foldin") if any(c in r for r in results.values()))
    head = "| model | " + " | ".join(f"{c} R@20 | {c} N@20" for c in cols) + " | train s |"
    lines = [head, "|" + "---|" * (2 * len(cols) + 2)]
    for name, r in results.items():
        cells = []
        for c in cols:
            m = r.get(c, {})
            cells += [f"{m['recall@20']:.4f}", f"{m['ndcg@20']:.4f}"] if m else ["–", "–"]
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {r.get('train_s', r.get('seconds', ''))} |")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
