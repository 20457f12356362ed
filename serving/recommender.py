"""The Python recommendation API over a versioned model artifact written by ``gnn``.

An artifact directory holds ``embeddings.npz`` (``user``, ``item``), ``ids.json``,
``train_items.npz`` (CSR of each user's training items, excluded from results), ``meta.json``
and, optionally, item titles in ``ids.json["item_title"]``. Serving reads only these plain files.
"""
from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

logger = logging.getLogger(__name__)


class UnknownUserError(KeyError):
    """The user id is not in the model (and no cold-start input was given)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item."""

    item_id: str
    score: float
    title: str


class Recommender:
    """Top-k recommendations from user and item embeddings (exact dot-product top-k)."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, user_ids: list[str], item_ids: list[str],
                 item_titles: list[str], train_indptr: np.ndarray, train_indices: np.ndarray,
                 meta: dict | None = None) -> None:
        self.user_emb = torch.from_numpy(np.ascontiguousarray(user_emb, dtype=np.float32))
        self.item_emb = torch.from_numpy(np.ascontiguousarray(item_emb, dtype=np.float32))
        self.user_ids, self.item_ids, self.item_titles = user_ids, item_ids, item_titles
        self.user_index = {u: k for k, u in enumerate(user_ids)}
        self.item_index = {i: k for k, i in enumerate(item_ids)}
        self.train_indptr, self.train_indices = train_indptr, train_indices
        self.meta = meta or {}

    @classmethod
    def load(cls, path: str | Path) -> "Recommender":
        """Load an artifact directory (or the ``current`` link that points to one).

        Raises:
            FileNotFoundError: the path holds no model artifact.
        """
        path = Path(path).resolve()
        if not (path / "embeddings.npz").is_file():
            raise FileNotFoundError(f"no model artifact at {path}: run `kgrec train` first")
        with np.load(path / "embeddings.npz") as z:
            user_emb, item_emb = z["user"], z["item"]
        ids = json.loads((path / "ids.json").read_text())
        meta = json.loads((path / "meta.json").read_text()) if (path / "meta.json").is_file() else {}
        meta["path"] = str(path)
        titles = ids.get("item_title") or _titles_from_snapshot(meta, len(ids["item"]))
        with np.load(path / "train_items.npz") as z:
            indptr, indices = z["indptr"], z["indices"]
        return cls(user_emb, item_emb, ids["user"], ids["item"], titles, indptr, indices, meta)

    @property
    def version(self) -> str:
        return str(self.meta.get("version", Path(self.meta.get("path", "?")).name))

    def seen_items(self, user_id: str) -> list[str]:
        """Items the user interacted with in training."""
        u = self._user(user_id)
        return [self.item_ids[j] for j in self.train_indices[self.train_indptr[u]:self.train_indptr[u + 1]]]

    def _user(self, user_id: str) -> int:
        try:
            return self.user_index[user_id]
        except KeyError:
            raise UnknownUserError(f"unknown user {user_id!r}") from None

    def score_items(self, user_vector: torch.Tensor) -> torch.Tensor:
        """Dot-product score of every item for one user vector of shape (d,)."""
        return self.item_emb @ user_vector

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True) -> list[Recommendation]:
        """Top-``k`` items for a known user, excluding training items by default.

        Raises:
            UnknownUserError: the user is not in the model.
        """
        u = self._user(user_id)
        scores = self.score_items(self.user_emb[u])
        if exclude_seen:
            seen = torch.from_numpy(self.train_indices[self.train_indptr[u]:self.train_indptr[u + 1]].astype(np.int64))
            scores[seen] = float("-inf")
        return self._top(scores, k)

    def recommend_from_items(self, item_ids: list[str], k: int = 10) -> list[Recommendation]:
        """Cold-start user: the mean embedding of the given items stands in for the user."""
        rows = [self.item_index[i] for i in item_ids if i in self.item_index]
        if not rows:
            raise UnknownUserError("none of the given items is known to the model")
        scores = self.score_items(self.item_emb[rows].mean(0))
        scores[torch.tensor(rows)] = float("-inf")
        return self._top(scores, k)

    def similar_items(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items nearest to ``item_id`` by cosine similarity of their embeddings."""
        if item_id not in self.item_index:
            raise KeyError(f"unknown item {item_id!r}")
        normed = torch.nn.functional.normalize(self.item_emb, dim=1)
        scores = normed @ normed[self.item_index[item_id]]
        scores[self.item_index[item_id]] = float("-inf")
        return self._top(scores, k)

    def _top(self, scores: torch.Tensor, k: int) -> list[Recommendation]:
        k = min(k, int(torch.isfinite(scores).sum()))
        values, index = torch.topk(scores, k)
        return [Recommendation(self.item_ids[j], float(v), self.item_titles[j])
                for v, j in zip(values.tolist(), index.tolist())]


def _titles_from_snapshot(meta: dict, n: int) -> list[str]:
    snap = meta.get("snapshot")
    texts = Path(snap) / "texts.json" if snap else None
    if texts is not None and texts.is_file():
        titles = json.loads(texts.read_text())["item_title"]
        if len(titles) == n:
            return titles
    return [""] * n
