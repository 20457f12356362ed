"""Cold start: an explicit cold-item split, inductive item embeddings, and cold-slice metrics.

- :func:`hold_out_items` removes a seeded fraction of items, with all their interactions, from a
  snapshot, so a model trained on the result has never seen them; their interactions join the test
  split of the full catalogue.
- :class:`RidgeMap` / :func:`inductive_item_embeddings` give such unseen items an embedding from
  their side information (text vector, mean text vector of their attribute entities) with a ridge
  regression fitted on the warm items' trained embeddings.
- :func:`evaluate_item_slice` restricts full-ranking metrics to test interactions whose item has at
  most N training interactions (N = 0: items never seen in training), optionally ranking only the
  slice's items; :func:`popularity_scorer` is the baseline.
- :func:`hold_out_users` removes a seeded fraction of users' histories, keeping their first few
  interactions as the support a new user gives; :func:`fold_in_users` embeds such a user as the
  mean embedding of those items (as ``serving.Recommender.recommend_from_items`` does).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from typing import Any, Callable, Mapping, Sequence

import numpy as np
import scipy.sparse as sp
import torch

from kg.snapshot import SPLITS, Interactions, Snapshot, rank_within_runs

from .evaluate import ScoreFn, as_csr, evaluate, to_csr

logger = logging.getLogger(__name__)


def concat_interactions(parts: Sequence[Interactions]) -> Interactions:
    """One :class:`Interactions` holding the rows of ``parts`` in order."""
    parts = [p for p in parts if len(p)] or [Interactions.empty()]
    return Interactions(*(np.concatenate([getattr(p, c) for p in parts])
                          for c in ("user", "item", "weight", "ts", "kind")))


@dataclass
class ColdItemSplit:
    """A snapshot with some items held out, and how to map back to the full catalogue.

    Attributes:
        snapshot: the training view: held-out items, their interactions and their edges removed;
            the remaining items renumbered ``0..len(warm_items)-1``.
        warm_items: (I_w,) full-catalogue index of each item of ``snapshot``.
        cold_items: (I_c,) full-catalogue indices of the held-out items (sorted).
        num_items: I, the full catalogue size.
        train: training interactions in full-catalogue item indices (= ``snapshot``'s train).
        valid: validation interactions in full-catalogue indices (warm items only).
        test: full-catalogue test interactions: the original test split plus every train and
            valid interaction of a held-out item.
    """

    snapshot: Snapshot
    warm_items: np.ndarray
    cold_items: np.ndarray
    num_items: int
    train: Interactions
    valid: Interactions
    test: Interactions

    def to_full(self, item_embeddings: np.ndarray) -> np.ndarray:
        """(I, d) array with the training view's (I_w, d) rows at their catalogue positions, zeros elsewhere."""
        out = np.zeros((self.num_items, item_embeddings.shape[1]), dtype=np.float32)
        out[self.warm_items] = item_embeddings
        return out


def hold_out_items(snapshot: Snapshot, fraction: float, seed: int = 2020, min_interactions: int = 1) -> ColdItemSplit:
    """Hold out ``fraction`` of the items that have at least ``min_interactions`` interactions.

    The choice is deterministic in ``seed``. Held-out items lose every interaction (train, valid
    and test) and every relation edge in the training view; all their interactions go to
    :attr:`ColdItemSplit.test`.

    Args:
        snapshot: the full snapshot.
        fraction: share of eligible items to hold out, in [0, 1).
        seed: RNG seed of the choice.
        min_interactions: only items with at least this many interactions (all splits) are eligible.

    Returns:
        The :class:`ColdItemSplit`.

    Raises:
        ValueError: ``fraction`` outside [0, 1).
    """
    if not 0 <= fraction < 1:
        raise ValueError("fraction must be in [0, 1)")
    num_items = snapshot.num_items
    splits = {s: snapshot.splits.get(s, Interactions.empty()) for s in SPLITS}
    counts = sum(np.bincount(splits[s].item, minlength=num_items) for s in SPLITS)
    eligible = np.flatnonzero(counts >= min_interactions)
    n_cold = int(round(fraction * len(eligible)))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
    is_cold = np.zeros(num_items, dtype=bool)
    is_cold[cold] = True
    warm = np.flatnonzero(~is_cold)
    new_index = np.full(num_items, -1, dtype=np.int64)
    new_index[warm] = np.arange(len(warm))

    kept = {s: splits[s].take(~is_cold[splits[s].item]) for s in SPLITS}
    view_splits = {s: replace(kept[s], item=new_index[kept[s].item]) for s in SPLITS}
    relations: dict[str, np.ndarray] = {}
    for name, edges in snapshot.relations.items():
        src_t, dst_t = snapshot.relation_types[name]
        e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
        keep = np.ones(e.shape[1], dtype=bool)
        e = e.copy()
        for row, t in ((0, src_t), (1, dst_t)):
            if t == "item":
                keep &= ~is_cold[e[row]]
                e[row] = new_index[e[row]]
        relations[name] = e[:, keep]
    view = Snapshot(
        ids={**snapshot.ids, "item": [snapshot.ids["item"][i] for i in warm]},
        entity_types=snapshot.entity_types,
        item_titles=[snapshot.item_titles[i] for i in warm],
        item_descriptions=[snapshot.item_descriptions[i] for i in warm],
        query_texts=snapshot.query_texts, entity_names=snapshot.entity_names, splits=view_splits,
        relations=relations, relation_types=dict(snapshot.relation_types), kinds=list(snapshot.kinds),
        meta={**snapshot.meta, "name": f"{snapshot.meta.get('name', 'snapshot')}-warm",
              "cold_items": {"fraction": fraction, "seed": seed, "held_out": int(n_cold)}})
    cold_pairs = [splits[s].take(is_cold[splits[s].item]) for s in ("train", "valid")]
    logger.info("held out %d of %d items (%d interactions moved to test)", n_cold, num_items,
                sum(len(p) for p in cold_pairs))
    return ColdItemSplit(view, warm, cold, num_items, kept["train"], kept["valid"],
                         concat_interactions([splits["test"], *cold_pairs]))


@dataclass
class ColdUserSplit:
    """A snapshot with some users' histories held out, keeping a few interactions each to fold them in.

    Attributes:
        snapshot: the training view: same ids, the held-out users have no interaction and no edge.
        cold_users: (n,) held-out user indices (sorted).
        support: the first ``shots`` interactions (by time) of each held-out user: what a new
            user has told the system.
        truth: the rest of their interactions, to evaluate on.
    """

    snapshot: Snapshot
    cold_users: np.ndarray
    support: Interactions
    truth: Interactions


def hold_out_users(snapshot: Snapshot, fraction: float, shots: int = 3, seed: int = 2020,
                   keep_relations: Sequence[str] = ()) -> ColdUserSplit:
    """Hold out ``fraction`` of the users that have interacted with more than ``shots`` distinct items.

    Each held-out user loses every interaction (all splits) and every edge (friends, searches) in
    the training view, except edges of ``keep_relations`` (e.g. ``["friend"]``: a new user who
    brings their friends but no history); each of their items counts once, at its first event: the
    ``shots`` earliest become :attr:`ColdUserSplit.support` and the others :attr:`ColdUserSplit.truth`.
    Deterministic in ``seed``.

    Raises:
        ValueError: ``fraction`` outside [0, 1) or ``shots`` < 1.
    """
    if not 0 <= fraction < 1 or shots < 1:
        raise ValueError("fraction must be in [0, 1) and shots >= 1")
    unknown = sorted(set(keep_relations) - set(snapshot.relations))
    if unknown:
        raise ValueError(f"keep_relations {unknown} are not in the snapshot; it has {sorted(snapshot.relations)}")
    splits = {s: snapshot.splits.get(s, Interactions.empty()) for s in SPLITS}
    n_items = max(snapshot.num_items, 1)
    # distinct items per user: a pair repeated (a LightGCN file's) is one item, as the export keeps it
    pairs = np.unique(np.concatenate([splits[s].user.astype(np.int64) * n_items + splits[s].item for s in SPLITS]))
    counts = np.bincount(pairs // n_items, minlength=snapshot.num_users)
    eligible = np.flatnonzero(counts > shots)
    n_cold = int(round(fraction * len(eligible)))
    rng = np.random.default_rng(seed)
    cold = np.sort(rng.choice(eligible, size=n_cold, replace=False)) if n_cold else np.zeros(0, np.int64)
    is_cold = np.zeros(snapshot.num_users, dtype=bool)
    is_cold[cold] = True
    history = concat_interactions([splits[s].take(is_cold[splits[s].user]) for s in SPLITS])
    order = np.lexsort((rng.random(len(history)), history.ts, history.user))  # by user, then time (ties random)
    history = history.take(order)
    _, first = np.unique(history.user.astype(np.int64) * n_items + history.item, return_index=True)
    history = history.take(np.sort(first))  # each item once, at its first event: no shot repeats another
    rank = rank_within_runs(history.user)
    relations = {}
    for name, edges in snapshot.relations.items():
        e = np.asarray(edges, dtype=np.int64).reshape(2, -1)
        keep = np.ones(e.shape[1], dtype=bool)
        if name not in keep_relations:
            for row, t in enumerate(snapshot.relation_types[name]):
                if t == "user":
                    keep &= ~is_cold[e[row]]
        relations[name] = e[:, keep]
    view = replace(snapshot, splits={s: splits[s].take(~is_cold[splits[s].user]) for s in SPLITS},
                   relations=relations, meta={**snapshot.meta, "cold_users": {"fraction": fraction, "seed": seed,
                                                                           "shots": shots, "held_out": n_cold,
                                                                           "kept_relations": list(keep_relations)}})
    logger.info("held out %d users (%d support, %d truth interactions)", n_cold, int((rank < shots).sum()),
                int((rank >= shots).sum()))
    return ColdUserSplit(view, cold, history.take(rank < shots), history.take(rank >= shots))


def thin_train(snapshot: Snapshot, fraction: float, seed: int = 2020) -> Snapshot:
    """Keep ``fraction`` of each user's training interactions (at least one), for sparsity studies.

    Each user keeps ``max(1, round(fraction * n))`` of their ``n`` training interactions, chosen at
    random (deterministic in ``seed``); validation, test and every edge stay as they are.

    Raises:
        ValueError: ``fraction`` outside (0, 1].
    """
    if not 0 < fraction <= 1:
        raise ValueError("fraction must be in (0, 1]")
    train = snapshot.splits.get("train", Interactions.empty())
    if fraction == 1 or not len(train):
        return snapshot
    rng = np.random.default_rng(seed)
    order = np.lexsort((rng.random(len(train)), train.user))  # by user, random within
    user = train.user[order]
    quota = np.maximum(1, np.rint(fraction * np.bincount(user)))
    kept = np.sort(order[rank_within_runs(user) < quota[user]])
    logger.info("kept %d of %d training interactions (fraction %.2f)", len(kept), len(train), fraction)
    return replace(snapshot, splits={**snapshot.splits, "train": train.take(kept)},
                   meta={**snapshot.meta, "thinned_train": {"fraction": fraction, "seed": seed}})


def item_side_features(item_text: np.ndarray, entity_text: np.ndarray | None = None,
                       item_entity_edges: Sequence[np.ndarray] = ()) -> np.ndarray:
    """Side-information features of every item: ``[t_i, mean of t_e over i's attribute entities]``.

    Text vectors are L2-normalised first; an item without attribute entities gets zeros in the
    second half. Without ``entity_text`` only ``t_i`` is returned.

    Args:
        item_text: (I, T) item text vectors.
        entity_text: (E, T) entity text vectors.
        item_entity_edges: (2, M) arrays of (item row, entity row) pairs.

    Returns:
        (I, T) or (I, 2T) float32 features.
    """
    def unit(a: np.ndarray) -> np.ndarray:
        a = np.asarray(a, dtype=np.float32)
        return a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)

    t = unit(item_text)
    if entity_text is None:
        return t
    te = unit(entity_text)
    edges = [np.asarray(e, dtype=np.int64).reshape(2, -1) for e in item_entity_edges]
    e = np.concatenate(edges, axis=1) if edges else np.zeros((2, 0), np.int64)
    m = sp.csr_matrix((np.ones(e.shape[1], np.float32), (e[0], e[1])), shape=(t.shape[0], te.shape[0]))
    m.sum_duplicates()
    m.data[:] = 1.0
    deg = np.asarray(m.sum(1)).ravel()
    attrs = (m @ te) / np.maximum(deg, 1)[:, None]
    return np.concatenate([t, attrs.astype(np.float32)], axis=1)


def snapshot_item_entity_edges(snapshot: Snapshot) -> list[np.ndarray]:
    """The (2, M) edge arrays of every item -> entity relation of ``snapshot``."""
    return [np.asarray(snapshot.relations[r]) for r, (s, d) in sorted(snapshot.relation_types.items())
            if s == "item" and d == "entity"]


MOMENT_ROWS = 16_384  # rows of a ridge fit converted to float64 at a time


def _moments(x: np.ndarray, y: np.ndarray, rows: np.ndarray) -> tuple[np.ndarray, ...]:
    """``(n, Σx, Σy, Σxᵀx, Σxᵀy)`` over ``rows``, in float64, :data:`MOMENT_ROWS` rows at a time."""
    f, d = x.shape[1], y.shape[1]
    sx, sy, xx, xy = np.zeros(f), np.zeros(d), np.zeros((f, f)), np.zeros((f, d))
    for start in range(0, len(rows), MOMENT_ROWS):
        part = rows[start:start + MOMENT_ROWS]
        xb, yb = x[part].astype(np.float64), y[part].astype(np.float64)
        sx += xb.sum(0)
        sy += yb.sum(0)
        xx += xb.T @ xb
        xy += xb.T @ yb
    return np.float64(len(rows)), sx, sy, xx, xy


def _solve(moments: tuple[np.ndarray, ...], alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """The ridge weight and bias on centred data, from :func:`_moments`."""
    n, sx, sy, xx, xy = moments
    mx, my = sx / n, sy / n
    gram = xx - n * np.outer(mx, mx)  # (x - mx)ᵀ(x - mx)
    cross = xy - n * np.outer(mx, my)
    w = np.linalg.solve(gram + alpha * np.eye(len(mx)), cross)
    return w, my - mx @ w


class RidgeMap:
    r"""Multi-output ridge regression :math:`Y \approx X W + b` with a validated penalty.

    :meth:`fit` holds out ``valid_fraction`` of the rows, picks the ``alpha`` with the lowest
    validation squared error, then refits on all rows:
    :math:`W = (\tilde X^\top \tilde X + \alpha I)^{-1} \tilde X^\top \tilde Y` on centred data.

    Args:
        alphas: candidate penalties.
        valid_fraction: share of rows used to choose ``alpha`` (0: use ``alphas[0]``).
        seed: RNG seed of the validation rows.
    """

    def __init__(self, alphas: Sequence[float] = (0.01, 0.1, 1.0, 10.0, 100.0), valid_fraction: float = 0.1,
                 seed: int = 0) -> None:
        if not alphas:
            raise ValueError("alphas must not be empty")
        self.alphas = [float(a) for a in alphas]
        self.valid_fraction, self.seed = valid_fraction, seed
        self.alpha: float | None = None
        self.weight: np.ndarray | None = None
        self.bias: np.ndarray | None = None

    def fit(self, x: np.ndarray, y: np.ndarray) -> "RidgeMap":
        """Fit on (n, F) features ``x`` and (n, d) targets ``y``.

        The fit needs only the sums of ``x``, ``y``, ``xᵀx`` and ``xᵀy`` (float64, gathered
        :data:`MOMENT_ROWS` rows at a time), so it holds no float64 or centred copy of ``x``, and each
        candidate ``alpha`` costs one (F, F) solve, not a pass over the rows.

        Raises:
            ValueError: fewer than two rows, or row counts differ.
        """
        x, y = np.asarray(x), np.asarray(y)
        if x.shape[0] != y.shape[0] or x.shape[0] < 2:
            raise ValueError(f"need >= 2 aligned rows, got x {x.shape}, y {y.shape}")
        if y.ndim == 1:  # one target: a (F,) weight and a scalar bias, as one column's
            self.fit(x, y[:, None])
            self.weight, self.bias = self.weight[:, 0], self.bias[0]
            return self
        self.alpha = self.alphas[0]
        n_val = int(round(self.valid_fraction * x.shape[0]))
        if len(self.alphas) > 1 and 1 <= n_val < x.shape[0] - 1:
            perm = np.random.default_rng(self.seed).permutation(x.shape[0])
            va, tr = np.sort(perm[:n_val]), np.sort(perm[n_val:])
            fit_part, held = _moments(x, y, tr), _moments(x, y, va)
            xv, yv = x[va].astype(np.float64), y[va].astype(np.float64)
            errors = []
            for a in self.alphas:
                w, b = _solve(fit_part, a)
                errors.append(float(((xv @ w + b - yv) ** 2).sum()))
            self.alpha = self.alphas[int(np.argmin(errors))]
            whole = tuple(p + q for p, q in zip(fit_part, held))  # the sums add up: no second pass
        else:
            whole = _moments(x, y, np.arange(x.shape[0]))
        self.weight, self.bias = _solve(whole, self.alpha)
        return self

    def predict(self, x: np.ndarray) -> np.ndarray:
        """(n, d) float32 predictions for (n, F) features.

        Raises:
            RuntimeError: called before :meth:`fit`.
        """
        if self.weight is None:
            raise RuntimeError("RidgeMap.fit must be called first")
        return (np.asarray(x, dtype=np.float64) @ self.weight + self.bias).astype(np.float32)

    def __repr__(self) -> str:
        return f"RidgeMap(alphas={self.alphas}, alpha={self.alpha})"


def inductive_item_embeddings(item_embeddings: np.ndarray, features: np.ndarray, known: np.ndarray,
                              ridge: RidgeMap | None = None) -> tuple[np.ndarray, RidgeMap]:
    """Replace the embeddings of unknown items by a ridge map from their side features.

    Args:
        item_embeddings: (I, d) trained embeddings (rows of unknown items are ignored).
        features: (I, F) side features (see :func:`item_side_features`).
        known: (I,) bool, the items whose trained embedding is trusted (e.g. >= 1 training
            interaction); the map is fitted on them.
        ridge: the regression to fit (default :class:`RidgeMap()`).

    Returns:
        ``(embeddings (I, d) float32, fitted ridge)``.
    """
    known = np.asarray(known, dtype=bool)
    ridge = ridge or RidgeMap()
    ridge.fit(features[known], item_embeddings[known])
    out = np.array(item_embeddings, dtype=np.float32, copy=True)
    if (~known).any():
        out[~known] = ridge.predict(features[~known])
    logger.info("inductive embeddings for %d items (ridge alpha %s, fitted on %d)", int((~known).sum()),
                ridge.alpha, int(known.sum()))
    return out, ridge


def map_untrained_items(item_embeddings: np.ndarray, features_of: Callable[[np.ndarray], np.ndarray],
                        trained: np.ndarray, max_fit: int = 100_000, seed: int = 0) -> tuple[np.ndarray, int]:
    """Embed the items without training events from their side features, as the benchmark's
    cold-item rows do (:func:`inductive_item_embeddings`): a ridge map fitted on trained items
    that have features (at most ``max_fit`` of them, drawn with ``seed``: the map has a few hundred
    inputs). Items without features keep their embedding; a map from nothing would give every
    one of them the mean item, which every user likes.

    Args:
        item_embeddings: (I, d) trained embeddings.
        features_of: the (n, F) side features of the given item rows (:func:`item_side_features_of`),
            asked for the untrained items and the sampled trained ones only, not the whole catalogue.
        trained: (I,) bool, the items with training events.

    Returns:
        ``(embeddings (I, d) float32, how many items were mapped)``.
    """
    trained = np.asarray(trained, dtype=bool)
    untrained = np.flatnonzero(~trained)
    if len(untrained) == 0:
        return np.asarray(item_embeddings, dtype=np.float32), 0
    target_features = features_of(untrained)
    has = np.abs(target_features).sum(axis=1) > 0
    targets, target_features = untrained[has], target_features[has]
    fit_rows = np.flatnonzero(trained)
    if len(fit_rows) > max_fit:
        fit_rows = np.sort(np.random.default_rng(seed).choice(fit_rows, max_fit, replace=False))
    fit_features = features_of(fit_rows) if len(targets) else np.zeros((0, 0), np.float32)
    fit_has = np.abs(fit_features).sum(axis=1) > 0
    if len(targets) == 0 or fit_has.sum() < 2:
        return np.asarray(item_embeddings, dtype=np.float32), 0
    ridge = RidgeMap(seed=seed).fit(fit_features[fit_has], np.asarray(item_embeddings)[fit_rows[fit_has]])
    out = np.array(item_embeddings, dtype=np.float32, copy=True)
    out[targets] = ridge.predict(target_features)
    logger.info("embedded %d items without training events from their text and attributes (ridge alpha %s, "
                "fitted on %d trained items)", len(targets), ridge.alpha, int(fit_has.sum()))
    return out, len(targets)


def item_side_features_of(rows: np.ndarray, item_text: np.ndarray, entity_text: np.ndarray | None = None,
                          item_entity_edges: Sequence[np.ndarray] = ()) -> np.ndarray:
    """:func:`item_side_features` of the item ``rows`` only (in their order), without building the
    whole catalogue's."""
    rows = np.asarray(rows, dtype=np.int64)
    position = np.full(len(item_text), -1, np.int64)
    position[rows] = np.arange(len(rows))
    edges = []
    for e in item_entity_edges:
        e = np.asarray(e, dtype=np.int64).reshape(2, -1)
        keep = position[e[0]] >= 0
        edges.append(np.stack([position[e[0, keep]], e[1, keep]]))
    return item_side_features(np.asarray(item_text)[rows], entity_text, edges)


def fold_in_users(item_embeddings: np.ndarray, user_items: sp.spmatrix) -> np.ndarray:
    """Embeddings of new users from a few items each: the mean of those items' embeddings.

    Args:
        item_embeddings: (I, d).
        user_items: (n, I) binary matrix of each new user's known items.

    Returns:
        (n, d) float32; zeros for a user with no items.
    """
    m = sp.csr_matrix(user_items, dtype=np.float32)
    deg = np.asarray(m.sum(1)).ravel()
    return (np.asarray(m @ item_embeddings) / np.maximum(deg, 1)[:, None]).astype(np.float32)


def popularity_scorer(train: sp.spmatrix, seed: int = 0, device: torch.device | str = "cpu") -> ScoreFn:
    """Score every item by its number of training users (ties broken by a fixed seeded jitter < 1)."""
    counts = item_train_counts(train).astype(np.float64)
    jitter = np.random.default_rng(seed).random(counts.shape[0]) * 0.5
    scores = torch.as_tensor(counts + jitter, dtype=torch.float32, device=device)
    return lambda users: scores.unsqueeze(0).expand(len(users), -1).clone()


def embedding_scorer(user_embeddings: np.ndarray | torch.Tensor, item_embeddings: np.ndarray | torch.Tensor,
                     device: torch.device | str = "cpu") -> ScoreFn:
    """Dot-product score function over (U, d) user and (I, d) item embeddings."""
    ue, ie = (x.detach().to(device, torch.float32) if isinstance(x, torch.Tensor)  # a model's, maybe on CUDA
              else torch.as_tensor(np.asarray(x), dtype=torch.float32, device=device)
              for x in (user_embeddings, item_embeddings))
    return lambda users: ue[users] @ ie.t()


def item_train_counts(train: sp.spmatrix) -> np.ndarray:
    """(I,) number of training users of each item (a stored zero is no interaction, as in evaluation)."""
    return np.asarray(as_csr(train, train.shape[1]).sum(0)).ravel().astype(np.int64)


def evaluate_item_slice(score_fn: ScoreFn, train: sp.spmatrix, truth: sp.spmatrix, max_train: int,
                        ks: Sequence[int], *, exclude: sp.spmatrix | None = None, slice_only: bool = False,
                        device: torch.device | str = "cpu") -> dict[str, float]:
    """Full-ranking metrics on the truth pairs whose item has ``<= max_train`` training interactions.

    Args:
        score_fn: (B,) users -> (B, I) scores.
        train: (U, I) training positives (masked from the ranking; defines the item counts).
        truth: (U, I) held-out positives; only pairs on slice items count, and only users with
            at least one such pair are evaluated.
        max_train: the slice is items with at most this many training interactions (0: unseen).
        ks: cut-offs.
        exclude: extra positives to mask (validation pairs).
        slice_only: rank only the slice's items (how well are the cold items ordered among
            themselves) instead of the whole catalogue; ``coverage@K`` is then the share of the
            slice's items recommended, not of the catalogue's.
        device: where scoring runs.

    Returns:
        :func:`gnn.evaluate.evaluate`'s metrics plus ``num_pairs`` and ``num_items`` of the slice;
        ``{"num_users": 0, ...}`` when the slice holds no truth pair.
    """
    train = sp.csr_matrix(train)
    num_items = train.shape[1]
    in_slice = item_train_counts(train) <= max_train
    t = sp.csr_matrix(truth, copy=True)
    t = t @ sp.diags(in_slice.astype(np.float32))
    t.eliminate_zeros()
    info = {"num_pairs": float(t.nnz), "num_items": float(in_slice.sum())}
    if t.nnz == 0:
        return {"num_users": 0.0, **info}
    fn = score_fn
    if slice_only:
        outside = torch.as_tensor(~in_slice, device=device)

        def fn(users: torch.Tensor) -> torch.Tensor:
            return score_fn(users).float().masked_fill(outside, -float("inf"))
    out = evaluate(fn, train, t, ks, num_items, device=device, exclude=exclude)
    if slice_only:  # only slice items are ever ranked (the rest are -inf, never counted as covered)
        out = {k: v * num_items / info["num_items"] if k.startswith("coverage@") else v for k, v in out.items()}
    return {**out, **info}


def split_matrices(split: ColdItemSplit, num_users: int, drop_users: np.ndarray | None = None) -> dict[str, sp.csr_matrix]:
    """``train``/``valid``/``test`` (U, I) matrices of a :class:`ColdItemSplit` over the full catalogue.

    Rows of ``drop_users`` (e.g. :attr:`ColdUserSplit.cold_users`) are emptied.
    """
    keep = np.ones(num_users, dtype=np.float32)
    if drop_users is not None:
        keep[np.asarray(drop_users, dtype=np.int64)] = 0
    out = {}
    for name, inter in (("train", split.train), ("valid", split.valid), ("test", split.test)):
        m = sp.csr_matrix(sp.diags(keep) @ to_csr(inter.user, inter.item, num_users, split.num_items))
        m.eliminate_zeros()
        out[name] = m
    return out


def text_for_view(text: Mapping[str, np.ndarray], split: ColdItemSplit) -> dict[str, Any]:
    """The training view's text vectors: item rows of the warm items, other types unchanged."""
    return {**text, "item": np.asarray(text["item"])[split.warm_items]}
