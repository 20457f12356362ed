"""Cold start: the held-out item split, slice metrics, ridge inductive embeddings, fold-in users."""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp
import torch

from gnn.coldstart import (RidgeMap, embedding_scorer, evaluate_item_slice, fold_in_users, hold_out_items,
                           hold_out_users, inductive_item_embeddings, item_side_features, item_train_counts, popularity_scorer,
                           snapshot_item_entity_edges, split_matrices, text_for_view, thin_train)
from gnn.evaluate import to_csr
from gnn.train import train
from kg.snapshot import Interactions, Snapshot
from test_gnn_kgfused import SPEC, item_communities, synthetic_snapshot, tiny_cfg


def inter(pairs: list[tuple[int, int]]) -> Interactions:
    a = np.asarray(pairs, dtype=np.int64).reshape(-1, 2)
    n = len(a)
    return Interactions(a[:, 0], a[:, 1], np.ones(n, np.float32), np.arange(n, dtype=np.int64), np.zeros(n, np.int16))


def small_snapshot() -> Snapshot:
    """3 users, 6 items (item 5 never interacted with), 2 entities, a query."""
    return Snapshot(
        ids={"user": ["u0", "u1", "u2"], "item": [f"i{k}" for k in range(6)], "query": ["q0"], "entity": ["e0", "e1"]},
        entity_types=["genre", "genre"], item_titles=[f"t{k}" for k in range(6)], item_descriptions=[""] * 6,
        query_texts=["q"], entity_names=["a", "b"],
        splits={"train": inter([(0, 0), (0, 1), (1, 2), (2, 3), (2, 4)]), "valid": inter([(1, 1)]),
                "test": inter([(0, 2), (1, 4), (2, 0)])},
        relations={"has:genre": np.array([[0, 1, 2, 3, 4, 5], [0, 0, 1, 1, 0, 1]]), "relevant": np.array([[0, 0], [1, 4]])},
        relation_types={"has:genre": ("item", "entity"), "relevant": ("query", "item")}, meta={"name": "small"})


def test_hold_out_items_removes_items_everywhere() -> None:
    snap = small_snapshot()
    split = hold_out_items(snap, 0.4, seed=3)
    cold = split.cold_items
    assert len(cold) == 2 and 5 not in cold  # 40% of the 5 items with interactions
    assert np.array_equal(np.sort(np.r_[split.warm_items, cold]), np.arange(6))
    view = split.snapshot
    assert view.ids["item"] == [f"i{k}" for k in split.warm_items]
    assert view.item_titles == [f"t{k}" for k in split.warm_items]
    for name in ("train", "valid", "test"):
        full_items = split.warm_items[view.splits[name].item]
        assert not np.isin(full_items, cold).any()
    # every original pair of a cold item is now a test pair; nothing else moved
    orig = {s: set(zip(snap.splits[s].user.tolist(), snap.splits[s].item.tolist())) for s in ("train", "valid", "test")}
    cold_pairs = {p for s in orig.values() for p in s if p[1] in set(cold.tolist())}
    test = set(zip(split.test.user.tolist(), split.test.item.tolist()))
    assert test == orig["test"] | cold_pairs
    assert set(zip(split.train.user.tolist(), split.train.item.tolist())) == {p for p in orig["train"] if p not in cold_pairs}
    # relation edges of cold items are gone, the rest renumbered
    g = view.relations["has:genre"]
    assert g.shape[1] == 4 and set(split.warm_items[g[0]].tolist()) == set(split.warm_items.tolist())
    rel = view.relations["relevant"]
    assert all(split.warm_items[i] in (1, 4) for i in rel[1])
    assert view.meta["cold_items"]["held_out"] == 2
    # deterministic in the seed
    assert np.array_equal(hold_out_items(snap, 0.4, seed=3).cold_items, cold)
    assert len(hold_out_items(snap, 0.0).cold_items) == 0
    with pytest.raises(ValueError):
        hold_out_items(snap, 1.0)
    full = split.to_full(np.ones((len(split.warm_items), 2), np.float32))
    assert full.shape == (6, 2) and full[cold].sum() == 0 and full[split.warm_items].min() == 1


def test_thin_train_keeps_a_share_of_each_users_training_pairs() -> None:
    snap = small_snapshot()
    # u0: 10 training pairs, u1: 3, u2: 1
    snap.splits["train"] = inter([(0, k % 6) for k in range(10)] + [(1, 0), (1, 1), (1, 2), (2, 3)])
    thin = thin_train(snap, 0.3, seed=1)
    train = thin.splits["train"]
    assert np.bincount(train.user, minlength=3).tolist() == [3, 1, 1]  # round(3.0), round(0.9), at least 1
    before = set(zip(snap.splits["train"].user.tolist(), snap.splits["train"].ts.tolist(),
                     snap.splits["train"].item.tolist()))
    assert set(zip(train.user.tolist(), train.ts.tolist(), train.item.tolist())) <= before
    assert thin.splits["valid"] is snap.splits["valid"] and thin.splits["test"] is snap.splits["test"]
    assert thin.relations is snap.relations and thin.meta["thinned_train"] == {"fraction": 0.3, "seed": 1}
    again = thin_train(snap, 0.3, seed=1).splits["train"]
    assert np.array_equal(again.item, train.item) and np.array_equal(again.ts, train.ts)
    assert thin_train(snap, 1.0) is snap
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError):
            thin_train(snap, bad)


def test_untrained_items_with_features_are_mapped_the_rest_kept() -> None:
    from gnn.coldstart import map_untrained_items

    rng = np.random.default_rng(0)
    w = rng.standard_normal((5, 3)).astype(np.float32)
    feats = rng.standard_normal((300, 5)).astype(np.float32)
    feats[290:] = 0  # no text, no attributes
    emb = feats @ w
    trained = np.arange(300) < 250
    scrambled = emb.copy()
    scrambled[250:] = 9.0  # untrained rows: whatever the initialisation left
    out, n = map_untrained_items(scrambled, lambda rows: feats[rows], trained, max_fit=100)
    assert n == 40 and np.allclose(out[250:290], emb[250:290], atol=0.05)  # linear: recovered
    assert np.array_equal(out[:250], scrambled[:250]) and (out[290:] == 9.0).all()
    assert map_untrained_items(scrambled, pytest.fail, np.ones(300, bool))[1] == 0  # all trained: nothing asked


def test_side_features_of_some_rows_are_those_rows_of_the_whole_catalogues() -> None:
    from gnn.coldstart import item_side_features, item_side_features_of

    rng = np.random.default_rng(1)
    text, ent = rng.standard_normal((6, 4)), rng.standard_normal((3, 4))
    edges = [np.array([[0, 2, 2, 5], [0, 1, 2, 1]]), np.array([[5], [0]])]
    rows = np.array([5, 2, 3])
    assert np.allclose(item_side_features_of(rows, text, ent, edges), item_side_features(text, ent, edges)[rows])


def test_a_held_out_users_repeated_item_is_one_shot() -> None:
    """A LightGCN file's snapshot repeats pairs: user 0's a x3 then b in train, a and c in test
    gave support [a, a, a]; each item counts once, at its first event, for eligibility too."""
    snap = small_snapshot()
    a, b, c = 0, 1, 2
    rows = {"train": [(0, a, 0), (0, a, 1), (0, a, 2), (0, b, 3), (1, a, 0), (1, a, 1), (1, a, 2), (1, a, 3)],
            "valid": [], "test": [(0, a, 4), (0, c, 5), (1, a, 4)]}

    def events(triples):
        t = np.asarray(triples, dtype=np.int64).reshape(-1, 3)
        return Interactions(t[:, 0], t[:, 1], np.ones(len(t), np.float32), t[:, 2], np.zeros(len(t), np.int16))

    snap = dataclasses.replace(snap, splits={s: events(r) for s, r in rows.items()})
    split = hold_out_users(snap, 0.99, shots=2, seed=0)
    assert split.cold_users.tolist() == [0]  # user 1 holds one distinct item: not eligible
    assert split.support.item.tolist() == [a, b] and split.truth.item.tolist() == [c]


def test_hold_out_users_keeps_first_shots_as_support() -> None:
    snap = small_snapshot()
    snap.relations["friend"] = np.array([[0, 1], [1, 2]])
    snap.relation_types["friend"] = ("user", "user")
    # u0 has 3 interactions (ts 0, 1 in train, ts 0 in test), u2 has 3, u1 has 3
    split = hold_out_users(snap, 0.34, shots=1, seed=0)
    assert len(split.cold_users) == 1
    u = int(split.cold_users[0])
    view = split.snapshot
    assert view.ids == snap.ids
    for name in ("train", "valid", "test"):
        assert u not in view.splits[name].user.tolist()
    assert len(split.support) == 1 and split.support.user.tolist() == [u]
    assert len(split.truth) == 2 and set(split.truth.user.tolist()) == {u}
    history = [(s, int(i), int(t)) for s in ("train", "valid", "test")
               for uu, i, t in zip(snap.splits[s].user, snap.splits[s].item, snap.splits[s].ts) if uu == u]
    first_ts = min(t for _, _, t in history)
    assert split.support.ts[0] == first_ts
    assert {int(i) for _, i, _ in history} == set(split.support.item.tolist()) | set(split.truth.item.tolist())
    assert u not in view.relations["friend"].ravel().tolist()
    assert view.relations["has:genre"].shape == (2, 6)
    assert np.array_equal(hold_out_users(snap, 0.34, shots=1, seed=0).cold_users, split.cold_users)
    # keep_relations: the held-out user keeps their friends (and nothing else changes)
    social = hold_out_users(snap, 0.34, shots=1, seed=0, keep_relations=["friend"])
    assert np.array_equal(social.cold_users, split.cold_users)
    assert np.array_equal(social.snapshot.relations["friend"], snap.relations["friend"])
    assert social.snapshot.meta["cold_users"]["kept_relations"] == ["friend"]
    assert len(social.snapshot.splits["train"]) == len(view.splits["train"])
    with pytest.raises(ValueError, match="not in the snapshot"):
        hold_out_users(snap, 0.34, keep_relations=["follows"])
    with pytest.raises(ValueError):
        hold_out_users(snap, 0.5, shots=0)
    items = hold_out_items(snap, 0.0)
    mats = split_matrices(items, 3, drop_users=split.cold_users)
    assert mats["train"][u].nnz == 0 and mats["test"][u].nnz == 0
    assert mats["train"].nnz == len(snap.splits["train"]) - int((snap.splits["train"].user == u).sum())


def test_item_side_features_by_hand() -> None:
    item_text = np.array([[3.0, 4.0], [1.0, 0.0]])
    entity_text = np.array([[0.0, 2.0], [2.0, 0.0]])
    x = item_side_features(item_text, entity_text, [np.array([[0, 0], [0, 1]])])
    np.testing.assert_allclose(x, [[0.6, 0.8, 0.5, 0.5], [1.0, 0.0, 0.0, 0.0]], atol=1e-6)
    np.testing.assert_allclose(item_side_features(item_text), [[0.6, 0.8], [1.0, 0.0]], atol=1e-6)
    assert [e.shape for e in snapshot_item_entity_edges(small_snapshot())] == [(2, 6)]


def test_ridge_recovers_a_linear_map_and_picks_small_alpha() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(80, 5))
    w = rng.normal(size=(5, 3))
    y = x @ w + np.array([1.0, -2.0, 0.5])
    r = RidgeMap(alphas=(1e-6, 10.0, 1000.0)).fit(x, y)
    assert r.alpha == 1e-6
    np.testing.assert_allclose(r.predict(x[:4]), y[:4], atol=1e-4)
    with pytest.raises(RuntimeError):
        RidgeMap().predict(x)
    with pytest.raises(ValueError):
        RidgeMap().fit(x[:1], y[:1])
    one = RidgeMap(alphas=(1e-6,)).fit(x, y[:, 1])  # one target, as a column of several
    assert one.weight.shape == (5,) and np.ndim(one.bias) == 0
    np.testing.assert_allclose(one.predict(x[:4]), y[:4, 1], atol=1e-4)
    # the map is fitted from sums gathered a chunk at a time: the same over any chunk size
    import gnn.coldstart as coldstart

    whole = RidgeMap().fit(x, y)
    chunked = coldstart.MOMENT_ROWS
    try:
        coldstart.MOMENT_ROWS = 7
        parts = RidgeMap().fit(x, y)
    finally:
        coldstart.MOMENT_ROWS = chunked
    np.testing.assert_allclose(parts.weight, whole.weight, atol=1e-10)


def test_inductive_embeddings_replace_only_unknown_rows() -> None:
    feats = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0], [2.0, 0.0], [0.5, 0.5]])
    emb = feats @ np.array([[2.0, 0.0], [0.0, 3.0]])  # a linear map of the features
    emb[3:] = 99.0  # untrained rows
    known = np.array([True, True, True, False, False])
    out, ridge = inductive_item_embeddings(emb, feats, known, RidgeMap(alphas=(1e-8,), valid_fraction=0))
    np.testing.assert_allclose(out[:3], emb[:3])
    np.testing.assert_allclose(out[3:], [[4.0, 0.0], [1.0, 1.5]], atol=1e-5)


def test_fold_in_users_is_mean_of_items() -> None:
    items = np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 1.0]])
    m = sp.csr_matrix(np.array([[1, 0, 1], [0, 0, 0]]))
    np.testing.assert_allclose(fold_in_users(items, m), [[1.0, 0.5], [0.0, 0.0]])


def test_item_slice_metrics_by_hand() -> None:
    train_m = to_csr(np.array([0, 1, 1]), np.array([0, 0, 1]), 2, 4)  # item counts 2, 1, 0, 0
    truth = to_csr(np.array([0, 0, 1]), np.array([2, 1, 3]), 2, 4)
    assert item_train_counts(train_m).tolist() == [2, 1, 0, 0]
    stored_zero = sp.csr_matrix((np.array([1.0, 0.0]), (np.array([0, 1]), np.array([0, 1]))), shape=(2, 3))
    assert item_train_counts(stored_zero).tolist() == [1, 0, 0]  # a stored zero is no interaction, as in evaluate
    fixed = torch.tensor([4.0, 3.0, 2.0, 1.0])

    def score(users: torch.Tensor) -> torch.Tensor:
        return fixed.expand(len(users), -1).clone()

    # unseen items {2, 3}: u0 ranks [1, 2, ...] (0 masked), u1 ranks [2, 3] (0, 1 masked)
    cold = evaluate_item_slice(score, train_m, truth, 0, [1, 2])
    assert cold["recall@1"] == 0.0 and cold["recall@2"] == 1.0
    assert cold["num_pairs"] == 2 and cold["num_items"] == 2 and cold["num_users"] == 2
    only = evaluate_item_slice(score, train_m, truth, 0, [1], slice_only=True)
    assert only["recall@1"] == 0.5  # u0's top among {2, 3} is 2 (a hit), u1's is 2 (a miss)
    assert only["coverage@1"] == 0.5  # both lists are [2]: 1 of the slice's 2 items
    assert evaluate_item_slice(score, train_m, truth, 0, [1])["coverage@1"] == 0.5  # [1] and [2]: 2 of 4
    few = evaluate_item_slice(score, train_m, truth, 1, [1])
    assert few["recall@1"] == pytest.approx(0.25)  # u0: item 1 is 1 of 2 truths; u1: miss
    empty = evaluate_item_slice(score, train_m, to_csr(np.array([0]), np.array([0]), 2, 4), 0, [1])
    assert empty["num_users"] == 0


def test_popularity_scorer_orders_by_count() -> None:
    train_m = to_csr(np.array([0, 1, 1, 2]), np.array([3, 3, 1, 3]), 3, 4)
    s = popularity_scorer(train_m, seed=0)(torch.tensor([0, 2]))
    assert s.shape == (2, 4)
    assert s[0].argsort(descending=True)[:2].tolist() == [3, 1]
    assert torch.equal(s[0], s[1])


def test_embedding_scorer_takes_a_models_tensors_as_they_come() -> None:
    users, items = torch.randn(3, 4, requires_grad=True), torch.randn(5, 4, requires_grad=True)
    scores = embedding_scorer(users, items)(torch.tensor([0, 2]))
    torch.testing.assert_close(scores, (users[[0, 2]] @ items.t()).detach())
    assert not scores.requires_grad


def test_inductive_cold_items_land_in_their_community(tmp_path: Path) -> None:
    """Train on the synthetic catalogue without 15% of its items; the ridge map from text puts each
    held-out item nearest its own community, and the cold slice beats popularity."""
    snap, text = synthetic_snapshot()
    split = hold_out_items(snap, 0.15, seed=5)
    art = train(split.snapshot, tiny_cfg(model="fused", fusion="sum"), tmp_path,
                text_embeddings=text_for_view(text, split)["item"], progress=False)
    with np.load(art / "embeddings.npz") as z:
        ue, ie_view = z["user"], z["item"]
    mats = split_matrices(split, snap.num_users)
    known = item_train_counts(mats["train"]) > 0
    feats = item_side_features(text["item"], text["entity"], snapshot_item_entity_edges(snap))
    ie, _ = inductive_item_embeddings(split.to_full(ie_view), feats, known)

    comm = item_communities(snap)
    unit = ie / np.linalg.norm(ie, axis=1, keepdims=True)
    centroids = np.stack([unit[known & (comm == c)].mean(0) for c in range(SPEC.num_communities)])
    cold = split.cold_items
    nearest = (unit[cold] @ centroids.T).argmax(1)
    assert (nearest == comm[cold]).mean() > 0.8, (nearest, comm[cold])

    ours = evaluate_item_slice(embedding_scorer(ue, ie), mats["train"], mats["test"], 0, [20], exclude=mats["valid"])
    pop = evaluate_item_slice(popularity_scorer(mats["train"]), mats["train"], mats["test"], 0, [20],
                              exclude=mats["valid"])
    assert ours["num_pairs"] > 50
    assert ours["recall@20"] > pop["recall@20"] + 0.1, (ours, pop)
    # ranking only the 24 held-out items among themselves (popularity is a random order there)
    ours_only = evaluate_item_slice(embedding_scorer(ue, ie), mats["train"], mats["test"], 0, [5],
                                    exclude=mats["valid"], slice_only=True)
    pop_only = evaluate_item_slice(popularity_scorer(mats["train"]), mats["train"], mats["test"], 0, [5],
                                   exclude=mats["valid"], slice_only=True)
    assert ours_only["num_items"] == 24
    assert ours_only["recall@5"] > pop_only["recall@5"] + 0.2, (ours_only, pop_only)
    assert json.loads((art / "metrics.json").read_text())["test"]["recall@20"] > 0.3
