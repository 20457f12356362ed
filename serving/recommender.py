"""The Python recommendation API over a versioned model artifact written by ``gnn``.

An artifact directory holds ``embeddings.npz`` (``user``, ``item``), ``ids.json``,
``train_items.npz`` (CSR of each user's training items), ``seen_items.npz`` (CSR of every
interaction in the snapshot, training, validation and test alike: excluded from results; older
artifacts without it exclude the training items only), ``meta.json``
and, optionally, item titles in ``ids.json["item_title"]``. Serving reads only these plain files.
Graph-filter artifacts (``gfcf``, ``bspm``) also hold ``filter.npz``: their scores come from the
whole filter applied to the user's item row, which also serves new users from their items.

Embedding models rank every item exactly, unless the catalogue reaches ``[serving] ann_min_items``:
then a FAISS index of the item embeddings (:mod:`serving.recall`) recalls candidates by inner
product and only those are ranked, exactly, without the user's own items.

An artifact with ``item_text.npy`` also answers free-text queries (:meth:`Recommender.search`,
:mod:`serving.search`): items recalled by text similarity, ranked for a user by the model.
One with ``item_attributes.npz`` ranks within attributes: ``recommend(user, within=["genre:Comedy"])``
recalls the items linked to every one of them in the knowledge graph and ranks those.
"""
from __future__ import annotations

import functools
import json
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import numpy as np
import scipy.sparse as sp
import torch

from gnn.artifact import load_artifact
from gnn.models.filters import load_filter
from kgrec.config import ServingConfig

from .recall import INDEX_FILE, ItemIndex, finite_rows, saved_or_new_index, top_k, uses_index
from .search import TEXT_INDEX_FILE, SearchUnavailableError, TextSearch, fuse_ranks

logger = logging.getLogger(__name__)


class UnknownUserError(KeyError):
    """The user id is not in the model (and no cold-start input was given)."""


class UnknownItemError(KeyError):
    """The item id is not in the model."""


class UnknownAttributeError(KeyError):
    """The attribute (entity) id links to no item of the model, or the model keeps no attributes."""


class AttributesUnavailableError(UnknownAttributeError):
    """The model keeps no item attributes, so no ``within`` can be answered (HTTP 409, not 404)."""


@dataclass(frozen=True)
class Recommendation:
    """One recommended item."""

    item_id: str
    score: float
    title: str


class RowScorer(Protocol):
    """Scores every item from users' raw item rows (a graph filter such as ``gnn.models.gfcf.GFCF``)."""

    def score_rows(self, rows: sp.csr_matrix) -> torch.Tensor:  # pragma: no cover - protocol
        ...


# a user with more items of their own is ranked exactly rather than through the index: recall for
# them would fetch this many candidates for every user searched in the same batch
HEAVY_SEEN = 10_000
# recommend_many scores at most this many (user, item) pairs at once (128 MiB of float32 scores):
# a write-back of short lists sends thousands of users a transaction
SCORED_CELLS = 2**25


class Recommender:
    """Top-k recommendations: exact dot-product top-k over the embeddings (over an approximate
    recall's candidates for very large catalogues, :meth:`use_index`), or, for graph-filter
    models, top-k of the filter's scores (``scorer``)."""

    def __init__(self, user_emb: np.ndarray, item_emb: np.ndarray, user_ids: list[str], item_ids: list[str],
                 item_titles: list[str], train_indptr: np.ndarray, train_indices: np.ndarray,
                 seen_indptr: np.ndarray, seen_indices: np.ndarray, meta: dict | None = None,
                 scorer: RowScorer | None = None) -> None:
        self.user_emb = torch.from_numpy(np.ascontiguousarray(user_emb, dtype=np.float32))
        self.item_emb = torch.from_numpy(np.ascontiguousarray(item_emb, dtype=np.float32))
        self.user_ids, self.item_ids, self.item_titles = user_ids, item_ids, item_titles
        self.user_index = {u: k for k, u in enumerate(user_ids)}
        self.item_index = {i: k for k, i in enumerate(item_ids)}
        self.meta = meta or {}
        self.scorer = scorer
        self.index: ItemIndex | None = None
        self.candidates = 0
        self.text_search: TextSearch | None = None
        self.search_candidates = ServingConfig.search_candidates
        self.query_items = ServingConfig.query_items
        self.attribute_index: dict[str, int] = {}
        self._attribute_items: sp.csr_matrix | None = None  # (A, I): the items holding each attribute
        self._train = sp.csr_matrix((np.ones(len(train_indices), np.float32), train_indices, train_indptr),
                                    shape=(len(user_ids), len(item_ids)))  # (U, I) training items
        # (U, I) every known interaction, training or held out: never recommended
        self._seen = sp.csr_matrix((np.ones(len(seen_indices), np.float32), seen_indices, seen_indptr),
                                   shape=(len(user_ids), len(item_ids)))
        # what a graph filter scores for each user: the training row, or, for a user with no training
        # events (one who came after a temporal split's cut), their held-out ones, else all scores are 0
        no_train = np.diff(self._train.indptr) == 0
        self._filter_rows = self._train
        if no_train.any():
            self._filter_rows = (self._train + sp.diags(no_train.astype(np.float32)) @ self._seen).tocsr()
            self._filter_rows.sum_duplicates()
            self._filter_rows.data[:] = 1.0  # an event known twice is one positive, as in training

    @classmethod
    def load(cls, path: str | Path, cfg: ServingConfig | None = None) -> "Recommender":
        """Load an artifact directory (or the ``current`` link that points to one); with ``cfg``'s
        ``ann_*`` settings (default: ``ServingConfig()``'s, not a TOML file's: pass
        ``load_config(path).serving`` for those) for the approximate recall.

        Raises:
            FileNotFoundError: the path holds no model artifact.
        """
        try:
            art = load_artifact(path)
        except FileNotFoundError as e:
            raise FileNotFoundError(f"{e}: run `kgrec train` first") from None
        meta = {**art.meta, "path": str(art.path)}
        titles = art.ids.get("item_title") or _titles_from_snapshot(meta, len(art.ids["item"]))
        rec = cls(art.user_embeddings, art.item_embeddings, art.ids["user"], art.ids["item"], titles,
                  art.train_indptr, art.train_indices, art.seen_indptr, art.seen_indices, meta)
        if art.filter_state is not None:
            rec.scorer = load_filter(meta.get("model", "gfcf"), art.config.get("filter"), rec._train,
                                     art.filter_state)
        cfg = cfg or ServingConfig()
        if cfg.search_candidates < 1 or cfg.query_items < 1:
            raise ValueError(f"[serving] search_candidates and query_items must be >= 1, got "
                             f"{cfg.search_candidates} and {cfg.query_items}")
        if art.item_attributes is not None:
            rec.use_attributes(*art.item_attributes, art.ids.get("attribute", []))
        if art.item_text is not None and "text_encoder" in meta:
            rec.text_search = TextSearch(art.item_text, meta["text_encoder"], cfg.search_device)
        rec.use_index(cfg)
        rec.search_candidates, rec.query_items = cfg.search_candidates, cfg.query_items
        return rec

    def use_index(self, cfg: ServingConfig) -> None:
        """Recall candidates from a FAISS index from now on when the catalogue has at least
        ``cfg.ann_min_items`` items (an embedding model only: a graph filter scores its whole row),
        and search results from one of the text vectors from ``cfg.search_ann_min_items`` items
        with text; each index is read from the artifact when it holds one, else built.

        Raises:
            ValueError: ``ann_nprobe`` or ``search_nprobe`` below 1, or ``ann_candidates`` below 0.
        """
        if cfg.ann_nprobe < 1 or cfg.search_nprobe < 1 or cfg.ann_candidates < 0:
            raise ValueError(f"[serving] ann_nprobe and search_nprobe must be >= 1 and ann_candidates >= 0, got "
                             f"{cfg.ann_nprobe}, {cfg.search_nprobe} and {cfg.ann_candidates}")
        large = uses_index(len(self.item_ids), cfg.ann_min_items)
        saved = Path(self.meta["path"]) if "path" in self.meta else None
        emb = self.item_emb.numpy()
        self.index = (saved_or_new_index(saved and saved / INDEX_FILE, emb, cfg.ann_nprobe, finite_rows(emb))
                      if large and self.scorer is None else None)
        self.candidates = cfg.ann_candidates
        if self.text_search is not None:
            self.text_search.use_index(cfg.search_ann_min_items, cfg.search_nprobe, saved and saved / TEXT_INDEX_FILE)

    def use_attributes(self, indptr: np.ndarray, indices: np.ndarray, attribute_ids: list[str]) -> None:
        """Know each item's attributes: a CSR (items x attributes) and the attributes' entity ids."""
        items = sp.csr_matrix((np.ones(len(indices), np.float32), indices, indptr),
                              shape=(len(self.item_ids), len(attribute_ids)))
        self._attribute_items = items.T.tocsr()
        self._attribute_items.sort_indices()
        self.attribute_index = {a: j for j, a in enumerate(attribute_ids)}

    def items_within(self, attribute_ids: list[str]) -> np.ndarray:
        """Rows of the items linked to every one of ``attribute_ids`` (entity ids such as
        ``genre:Comedy``), ascending.

        Raises:
            UnknownAttributeError: an id links to no item, or the model keeps no item attributes.
        """
        if self._attribute_items is None:
            raise AttributesUnavailableError(f"model {self.version} keeps no item attributes: retrain it on a "
                                        "snapshot whose items have attributes")
        rows: np.ndarray | None = None
        for a in dict.fromkeys(attribute_ids):
            if a not in self.attribute_index:
                raise UnknownAttributeError(f"no item of model {self.version} has attribute {a!r}{self._near(a)}")
            j = self.attribute_index[a]
            items = self._attribute_items.indices[self._attribute_items.indptr[j]:self._attribute_items.indptr[j + 1]]
            rows = items if rows is None else np.intersect1d(rows, items, assume_unique=True)
        return np.asarray(rows if rows is not None else np.arange(len(self.item_ids)), dtype=np.int64)

    def _near(self, attribute_id: str) -> str:
        """A hint naming the model's attribute ids that ``attribute_id`` may have meant: the same
        value under its entity type (``comedy`` for ``genre:Comedy``), or another case."""
        value = attribute_id.rsplit(":", 1)[-1].casefold()
        near = [a for a in self.attribute_index if a.rsplit(":", 1)[-1].casefold() == value][:3]
        return f" (ids are <type>:<value>: did you mean {', '.join(map(repr, near))}?)" if near else ""

    @property
    def version(self) -> str:
        return str(self.meta.get("version", Path(self.meta.get("path", "?")).name))

    @property
    def seen(self) -> sp.csr_matrix:
        """(users, items) 0/1 matrix of every interaction the model knows of (rows and columns as
        ``user_ids`` and ``item_ids``): what recommendations leave out."""
        return self._seen

    def seen_items(self, user_id: str) -> list[str]:
        """Items the user is known to have interacted with (any split of the training snapshot)."""
        return [self.item_ids[j] for j in self._seen_rows(self._user(user_id))]

    def _seen_rows(self, u: int) -> np.ndarray:
        """Item rows of user row ``u``'s known interactions."""
        return self._seen.indices[self._seen.indptr[u]:self._seen.indptr[u + 1]]

    def _candidate_scores(self, u: int, rows: torch.Tensor) -> torch.Tensor:
        """User row ``u``'s scores of the item ``rows``: a graph filter scores its whole row, an
        embedding model the candidates' dot products only."""
        if self.scorer is not None:
            return self.score_users(np.array([u]))[0][rows]
        return self.item_emb[rows] @ self.user_emb[u]

    def _user(self, user_id: str | int) -> int:
        try:
            return self.user_index[_as_id(user_id)]
        except KeyError:
            raise UnknownUserError(f"unknown user {user_id!r}") from None

    def score_users(self, users: np.ndarray, train_only: bool = False) -> torch.Tensor:
        """(B, I) scores of every item for the users at these rows, nothing masked: dot products,
        or a graph filter's scores of each user's training row (held-out events for a user without,
        unless ``train_only``: an evaluation on those events must not be given them)."""
        if self.scorer is not None:  # the filter scores the row it was fitted on: training items
            rows = self._train if train_only else self._filter_rows
            return self.scorer.score_rows(rows[users]).float().cpu()
        return self.user_emb[torch.from_numpy(np.asarray(users, dtype=np.int64))] @ self.item_emb.t()

    def score_items(self, user_vector: torch.Tensor) -> torch.Tensor:
        """Dot-product score of every item for one user vector of shape (d,)."""
        return self.item_emb @ user_vector

    def recommend(self, user_id: str, k: int = 10, exclude_seen: bool = True,
                  within: str | list[str] | tuple[str, ...] = (),
                  exclude: str | list[str] | tuple[str, ...] = ()) -> list[Recommendation]:
        """Top-``k`` items for a known user, excluding the items they interacted with by default.
        With ``within`` (attribute or knowledge-graph entity ids), only the items linked to every
        one of them are ranked: graph recall, then the model's scores. ``exclude`` leaves out more
        items (ids the model does not know are ignored): what the user took up since the model's
        snapshot, say, which the model cannot know.

        Raises:
            UnknownUserError: the user is not in the model.
            UnknownAttributeError: a ``within`` id links to no item of the model.
            TypeError: an id that is neither a string nor a whole number (None, a float).
        """
        within = [a for a in _id_list(within) if a]  # an empty value (``?within=``) constrains nothing
        if not within:
            return self.recommend_many([user_id], k, exclude_seen, exclude)[0]
        left_out = self._known_item_rows(exclude)
        rows = torch.from_numpy(self.items_within(within))  # what the model cannot do, before a caller's typo
        u = self._user(user_id)
        scores = self._candidate_scores(u, rows)
        if exclude_seen:
            scores[torch.from_numpy(np.isin(rows.numpy(), self._seen_rows(u)))] = float("-inf")
        scores[torch.from_numpy(np.isin(rows.numpy(), left_out))] = float("-inf")
        return self._top(scores, k, rows)

    def recommend_many(self, user_ids: list[str], k: int = 10, exclude_seen: bool = True,
                       exclude: str | list[str] | tuple[str, ...] | set[str] = ()) -> list[list[Recommendation]]:
        """:meth:`recommend` for several known users, scored as one batch; ``exclude`` leaves items
        out of every list (ids the model does not know are ignored): those deleted from the graph, say.

        Raises:
            UnknownUserError: a user is not in the model.
        """
        users = np.array([self._user(u) for u in user_ids], dtype=np.int64)
        left_out = self._known_item_rows(exclude)
        step = max(1, SCORED_CELLS // max(1, len(self.item_ids)))  # users scored at once: memory bounded
        return [r for start in range(0, len(users), step)
                for r in self._recommend_rows(users[start:start + step], k, exclude_seen, left_out)]

    def _known_item_rows(self, ids: str | list[str] | tuple[str, ...] | set[str]) -> np.ndarray:
        """Sorted rows of the items ``ids`` names that the model knows (others are ignored)."""
        return np.array(sorted({self.item_index[i] for i in _id_list(ids) if i in self.item_index}), np.int64)

    def _recommend_rows(self, users: np.ndarray, k: int, exclude_seen: bool,
                        left_out: np.ndarray) -> list[list[Recommendation]]:
        """:meth:`recommend_many` for the users at these rows, scored as one batch, without the item
        rows ``left_out``."""
        if self.index is not None:
            return self._recommend_recalled(users, k, exclude_seen, left_out)
        scores = self.score_users(users)
        if exclude_seen:
            coo = self._seen[users].tocoo()
            scores[torch.from_numpy(coo.row.astype(np.int64)), torch.from_numpy(coo.col.astype(np.int64))] = float("-inf")
        scores[:, torch.from_numpy(left_out)] = float("-inf")
        return [self._top(row, k) for row in scores]

    def _recommend_recalled(self, users: np.ndarray, k: int, exclude_seen: bool,
                            left_out: np.ndarray) -> list[list[Recommendation]]:
        """Top-``k`` of each user's recalled candidates, by their exact inner products (an IVF index
        returns those); a user for whom the scanned cells hold fewer than ``k`` items besides their
        own, or who has more than :data:`HEAVY_SEEN` items of their own (one search would
        otherwise fetch that many candidates for every user of the batch), is ranked over the
        whole catalogue instead."""
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        vectors = self.user_emb[torch.from_numpy(users)]
        own = self._seen[users] if exclude_seen else None
        own_counts = np.diff(own.indptr) if own is not None else np.zeros(len(users), np.int64)
        recalled = own_counts <= HEAVY_SEEN
        most_own = int(own_counts[recalled].max(initial=0))
        n = max(1, min(len(self.item_ids), k + most_own + self.candidates))
        found = np.full((len(users), n), -np.inf, np.float32)  # (B, n) scores and item rows; -1 pads
        rows = np.full((len(users), n), -1, np.int64)
        if recalled.any():
            found[recalled], rows[recalled] = self.index.search(vectors[torch.from_numpy(recalled)].numpy(), n)
        scores, rows = torch.from_numpy(found), torch.from_numpy(rows)
        scores[rows < 0] = float("-inf")
        out = []
        for b in range(len(users)):
            mine = own.indices[own.indptr[b]:own.indptr[b + 1]] if own is not None else np.empty(0, np.int32)
            if len(left_out):  # a user whose candidates these empty is ranked exactly below
                mine = np.union1d(mine, left_out)
            scores[b, torch.from_numpy(np.isin(rows[b].numpy(), mine))] = float("-inf")
            if not recalled[b] or int(torch.isfinite(scores[b]).sum()) < min(k, len(self.item_ids) - len(mine)):
                exact = self.score_items(vectors[b])
                exact[torch.from_numpy(mine.astype(np.int64))] = float("-inf")
                out.append(self._top(exact, k))
            else:
                out.append(self._top(scores[b], k, rows[b]))
        return out

    def search(self, text: str, k: int = 10, user_id: str | None = None) -> list[Recommendation]:
        """Items for a free-text query: the most similar by text, or, for ``user_id``, the
        ``search_candidates`` most similar that the user has not interacted with, ranked by fusing
        the text order with the user's model scores (:mod:`serving.search`). Scores are the cosine
        similarity without a user and the fused reciprocal-rank score with one.

        Raises:
            SearchUnavailableError: the artifact holds no item text vectors.
            UnknownUserError: ``user_id`` is not in the model.
            ValueError: an empty text, or k below 0.
        """
        if k < 0:
            raise ValueError(f"k must be >= 0, got {k}")
        searchable = self._searchable()  # first: a model that cannot search says so, whoever asks
        u = self._user(user_id) if user_id is not None else None
        if u is None:
            relevance, rows = searchable.top(text, k)
            return [Recommendation(self.item_ids[j], float(v), self.item_titles[j])
                    for v, j in zip(relevance.tolist(), rows.tolist())]
        relevance, candidates = searchable.top(text, max(k, self.search_candidates), exclude=self._seen_rows(u))
        preference = self._candidate_scores(u, candidates).nan_to_num(nan=float("-inf"))  # a broken row ranks last
        fused = fuse_ranks(relevance, preference)  # candidates are in relevance order: a stable sort keeps it on ties
        order = torch.argsort(fused, descending=True, stable=True)[:k]
        return [Recommendation(self.item_ids[j], float(v), self.item_titles[j])
                for v, j in zip(fused[order].tolist(), candidates[order].tolist())]

    def recommend_from_items(self, item_ids: list[str], k: int = 10,
                             friend_ids: list[str] | tuple[str, ...] = (),
                             queries: list[str] | tuple[str, ...] = ()) -> list[Recommendation]:
        """Cold-start user from the items they interacted with, the known users they befriend and/or
        the free-text queries they searched.

        Each query stands for its ``query_items`` best text matches (:mod:`serving.search`),
        together counting as one item. Graph-filter models score the item row exactly as they
        score a trained user's, a query's matches sharing one item's weight (they take no
        friends). Embedding models use the mean of the neighbours' embeddings, each item, friend
        and query counting once: one LightGCN propagation step for the new node. On lastfm this
        beats counting the friends' items, with plain LightGCN and a little more with
        ``graph_relations = ["friend"]`` (docs/results.md). Unknown ids are skipped; the given items
        are not recommended, a query's matches may be.

        An item, friend or query match whose embedding is not finite is left out of the mean.

        Raises:
            UnknownUserError: no query is given and none of the given items or friends is known
                (or has a finite embedding); for a graph filter, none of the items (or query
                matches) has training events.
            SearchUnavailableError: queries given to a model without item text vectors.
            ValueError: friends given to a graph-filter model, or an empty query.
            TypeError: an id that is neither a string nor a whole number (None, a float).
        """
        item_ids, friend_ids, queries = _id_list(item_ids), _id_list(friend_ids), _id_list(queries)
        if self.scorer is not None and friend_ids:
            raise ValueError("a graph-filter model scores item rows only; it cannot use friends")
        rows = sorted({self.item_index[i] for i in item_ids if i in self.item_index})
        friends = sorted({self.user_index[u] for u in friend_ids if u in self.user_index})
        if not rows and not friends and not queries:
            named = [f"{what} {ids[:10]!r}{' and more' if len(ids) > 10 else ''}"
                     for what, ids in (("items", list(dict.fromkeys(item_ids))), ("friends", list(dict.fromkeys(friend_ids))))
                     if ids]
            raise UnknownUserError(f"none of the given items or friends is known to the model"
                                   f"{': ' + ', '.join(named) if named else ''}")
        queries = list(dict.fromkeys(queries))  # a repeated query counts once, as an item does
        matches = [self._query_matches(q) for q in queries]  # one (query_items,) row set per query
        if self.scorer is not None:
            cols = np.concatenate([np.asarray(rows, np.int64), *matches])
            weights = np.concatenate([np.ones(len(rows), np.float32),
                                      *(np.full(len(m), 1 / len(m), np.float32) for m in matches)])
            row = sp.csr_matrix((weights, (np.zeros(len(cols), np.int64), cols)), shape=(1, len(self.item_ids)))
            row.sum_duplicates()
            scores = self.scorer.score_rows(row)[0].float().cpu()
            if not bool(scores.any()):  # only items without training events: the filter has nothing to go on
                raise UnknownUserError("none of the given items (nor a query's matches) has training events: "
                                       "a graph filter has nothing to score from")
        else:
            neighbours = torch.cat([self.item_emb[rows], self.user_emb[friends],
                                    *(_finite(self.item_emb[torch.from_numpy(m)]).mean(0, keepdim=True)
                                      for m in matches)], 0)
            neighbours = _finite(neighbours)  # a broken row (or a query whose matches all are) is left out
            if not len(neighbours):
                raise UnknownUserError("none of the given items, friends or queries has a usable embedding")
            scores = self.score_items(neighbours.mean(0))
        if rows:
            scores[torch.tensor(rows)] = float("-inf")
        return self._top(scores, k)

    def _searchable(self) -> TextSearch:
        if self.text_search is None:
            raise SearchUnavailableError(f"model {self.version} has no item text vectors to search: run `kgrec "
                                         "encode` on the snapshot before `kgrec train`")
        return self.text_search

    def _query_matches(self, text: str) -> np.ndarray:
        """Item rows of a query's ``query_items`` best text matches."""
        rows = self._searchable().top(text, self.query_items)[1]  # items without text never match
        if len(rows) == 0:
            raise SearchUnavailableError(f"model {self.version} has no item with text to match queries with")
        return rows.numpy()

    def similar_items(self, item_id: str, k: int = 10) -> list[Recommendation]:
        """Items nearest to ``item_id`` by cosine similarity of their embeddings.

        Raises:
            UnknownItemError: the item is not in the model.
        """
        item_id = _as_id(item_id)
        if item_id not in self.item_index:
            raise UnknownItemError(f"unknown item {item_id!r}")
        j = self.item_index[item_id]
        norms = self._item_norms  # once per model: not a normalised copy of the items per request
        if not 0 < float(norms[j]) < math.inf:  # no direction, or not finite (a graph filter's item
            return []  # without training events): nothing is near it, as in the Browser's vector query
        scores = (self.item_emb @ self.item_emb[j]) / (norms * norms[j]).clamp_min(1e-12)  # normalize()'s eps
        scores[~((norms > 0) & (norms < math.inf))] = float("-inf")  # nor is it near them (write-back indexes none)
        scores[j] = float("-inf")
        return self._top(scores, k)

    @functools.cached_property
    def _item_norms(self) -> torch.Tensor:
        """(I,) Euclidean norm of each item embedding."""
        return torch.linalg.vector_norm(self.item_emb, dim=1)

    def _top(self, scores: torch.Tensor, k: int, rows: torch.Tensor | None = None) -> list[Recommendation]:
        """The best ``k`` finite scores; ``rows`` maps score positions to item rows (default: the
        same). Ties in item-row order (:func:`serving.recall.top_k`)."""
        values, index = top_k(scores, k, rows)
        return [Recommendation(self.item_ids[j], float(v), self.item_titles[j])
                for v, j in zip(values.tolist(), index.tolist())]


def _finite(vectors: torch.Tensor) -> torch.Tensor:
    """The rows of ``vectors`` whose every value is finite."""
    return vectors[torch.isfinite(vectors).all(1)]


def _id_list(values: str | int | list[str | int] | tuple[str | int, ...]) -> list[str]:
    """``values`` as a list of ids (:func:`_as_id`): one string is one id (or query), never its characters."""
    return [_as_id(values)] if isinstance(values, (str, int, np.integer)) else [_as_id(v) for v in values]


def _as_id(value: str | int) -> str:
    """An id as the model keeps it: a string; a whole number is the id it spells (MovieLens' and
    Last.fm's ids are numbers), as the HTTP API takes it.

    Raises:
        TypeError: anything else (a float, None), which would never match an id.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_)):
        return str(int(value))
    raise TypeError(f"ids are strings (or whole numbers), got {type(value).__name__} {value!r}")


def _titles_from_snapshot(meta: dict, n: int) -> list[str]:
    snap = meta.get("snapshot")
    texts = Path(snap) / "texts.json" if snap else None
    if texts is not None and texts.is_file():
        titles = json.loads(texts.read_text(encoding="utf-8"))["item_title"]
        if len(titles) == n:
            return titles
    return [""] * n
