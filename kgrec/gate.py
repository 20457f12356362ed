"""Retrain's quality gate, head to head: the served model and the new one on the same newest events.

Each model's own test figure comes from its own snapshot, so comparing the two catches broken runs
and bad data, not a worse model. When new events have arrived since the served model's snapshot,
both models can be measured on the same ones instead: the new snapshot's test interactions that
the served model never saw (in none of its splits), of users and items both models know. Both rank
the items they both know, with every interaction either model knew of masked (the served model's
whole snapshot, the new one's training and validation splits), so neither is handed items the other
cannot rank or must skip. ``kgrec.retrain`` uses it when at least ``[retrain] min_gate_users`` users
have such events, and the figures of each model's own test split otherwise.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import scipy.sparse as sp
import torch

from gnn.evaluate import evaluate
from kg.snapshot import Snapshot
from kgrec.config import ServingConfig
from serving.recommender import Recommender

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class HeadToHead:
    """Both models' gate metric on the same events."""

    new: float
    served: float
    users: int  # users with events the served model never saw
    events: int


def picked_on_test(artifact: Path) -> bool:
    """Whether the artifact's weights were picked among several evaluations on its test split (a
    snapshot without a validation split early-stops on test), so its test figures flatter it."""
    metrics = json.loads((Path(artifact) / "metrics.json").read_text())
    if not isinstance(metrics, dict) or not isinstance(metrics.get("history") or [], list):
        raise ValueError(f"{Path(artifact) / 'metrics.json'} is not a training's metrics")
    evaluations = [row for row in metrics.get("history") or []
                   if isinstance(row, dict) and any(k.startswith("test_") for k in row)]
    return metrics.get("eval_split") == "test" and len(evaluations) > 1


def head_to_head(served_dir: Path, new_dir: Path, snapshot_dir: Path, metric: str) -> HeadToHead | None:
    """The gate ``metric`` (``name@k``) of both models on the new snapshot's test events that the
    served model never saw; None when there are none, or when they cannot be compared fairly:

    - the new model was picked among its epochs by those very events (a snapshot without a
      validation split early-stops on test);
    - the served artifact does not record every interaction it knew of (``seen_items.npz``, missing
      from older artifacts), so its own validation and test events would count as unseen.

    ``new_dir`` must be the artifact trained on ``snapshot_dir`` (its rows are the snapshot's)."""
    if picked_on_test(new_dir):
        logger.info("no head-to-head: %s was early-stopped on the test events it would be judged on", new_dir)
        return None
    if not (Path(served_dir) / "seen_items.npz").is_file():
        logger.info("no head-to-head: %s does not record every interaction it knew of", served_dir)
        return None
    exact = ServingConfig(ann_min_items=0, search_ann_min_items=0)  # every item scored; no search
    served, new = Recommender.load(served_dir, exact), Recommender.load(new_dir, exact)
    snap = Snapshot.load(snapshot_dir)
    if list(new.user_ids) != list(snap.ids["user"]) or list(new.item_ids) != list(snap.ids["item"]):
        raise ValueError(f"{new_dir} was not trained on {snapshot_dir}")
    # the items both know: column c is new row new_cols[c] and served row served_cols[c]
    new_cols = np.array([j for j, i in enumerate(new.item_ids) if i in served.item_index], dtype=np.int64)
    served_cols = np.array([served.item_index[new.item_ids[j]] for j in new_cols], dtype=np.int64)
    column = np.full(len(new.item_ids), -1, dtype=np.int64)
    column[new_cols] = np.arange(len(new_cols))
    served_row = np.array([served.user_index.get(u, -1) for u in new.user_ids], dtype=np.int64)

    test = snap.splits.get("test")
    if test is None or len(test) == 0 or len(new_cols) == 0:
        return None
    u, c = test.user.astype(np.int64), column[test.item]
    keep = (served_row[u] >= 0) & (c >= 0)
    if not keep.any():  # every test event is a user or item the served model does not know
        return None
    u, c = u[keep], c[keep]
    unseen = np.asarray(served.seen[served_row[u], served_cols[c]]).ravel() == 0
    u, c = u[unseen], c[unseen]
    users = np.unique(u)
    if len(users) == 0:
        return None
    rows = np.searchsorted(users, u)  # users is sorted: each event's row in the gate's matrices
    shape = (len(users), len(new_cols))
    truth = sp.csr_matrix((np.ones(len(rows), np.float32), (rows, c)), shape=shape)

    # masked for both: what either model knew of these users, on the common items
    known = [served.seen[served_row[users]][:, served_cols]]
    for part in (snap.splits.get("train"), snap.splits.get("valid")):
        if part is not None and len(part):
            mine = np.isin(part.user, users) & (column[part.item] >= 0)
            r = np.searchsorted(users, part.user[mine])
            known.append(sp.csr_matrix((np.ones(len(r), np.float32), (r, column[part.item[mine]])), shape=shape))
    masked = sum(known[1:], known[0].tocsr()).tocsr()
    masked.data[:] = 1

    k = int(metric.partition("@")[2])

    def score(model: Recommender, model_rows: np.ndarray, cols: np.ndarray, train_only: bool):
        items = model.item_emb[torch.from_numpy(cols)] if model.scorer is None else None

        def fn(batch: torch.Tensor) -> torch.Tensor:
            rows = model_rows[batch.numpy()]
            if items is not None:  # only the common items' scores, not the whole catalogue's
                return model.user_emb[torch.from_numpy(rows)] @ items.t()
            return model.score_users(rows, train_only=train_only)[:, torch.from_numpy(cols)].contiguous()
        return fn

    # a graph filter scores a user without training events from their held-out ones: the served
    # model as it serves (none of those is graded here), the new one from training rows only (its
    # held-out events are the very ones graded)
    figures = [evaluate(score(model, model_rows, cols, train_only), masked, truth, [k], shape[1])[metric]
               for model, model_rows, cols, train_only in ((new, users, new_cols, True),
                                                           (served, served_row[users], served_cols, False))]
    return HeadToHead(new=float(figures[0]), served=float(figures[1]), users=len(users), events=int(truth.nnz))
