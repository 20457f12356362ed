"""Split rules of the export (pure numpy, hand-checked cases)."""
from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np
import pytest

from kg.export import resolve_split, split_interactions
from kgrec.config import ExportConfig


def test_leave_one_out_takes_latest_for_test_and_next_for_valid():
    user = np.array([0, 0, 0, 0, 1, 1])
    item = np.arange(6)
    ts = np.array([40, 10, 30, 20, 5, 6])
    codes = split_interactions(user, item, ts, ExportConfig(split="loo"))
    # user 0: ts 40 -> test, ts 30 -> valid, rest train; user 1 has < 3 events: all train
    assert codes.tolist() == [2, 0, 1, 0, 0, 0]


def test_leave_one_out_breaks_ties_of_time_by_a_seeded_draw_not_by_item():
    """Day-stamped events: the held-out pair among a user's last day is drawn, not always the
    item with the largest id."""
    user = np.repeat(np.arange(200), 4)
    item = np.tile(np.arange(4), 200)
    ts = np.tile([1, 2, 3, 3], 200)  # the last two of each user on the same day
    held = [item[split_interactions(user, item, ts, ExportConfig(split="loo", seed=s)) == 2] for s in (1, 2)]
    assert set(held[0].tolist()) == {2, 3} and 60 < (held[0] == 3).sum() < 140  # either, about evenly
    assert not np.array_equal(held[0], held[1])  # another seed, another draw
    again = split_interactions(user, item, ts, ExportConfig(split="loo", seed=1))
    assert np.array_equal(item[again == 2], held[0])
    assert set(item[again == 1].tolist()) == {2, 3}  # valid is the other of the two, never the day before


def test_ratio_keeps_one_training_pair_per_user_and_is_seeded():
    rng = np.random.default_rng(0)
    user = np.repeat(np.arange(50), rng.integers(1, 30, size=50))
    item = np.arange(user.size)
    ts = np.zeros(user.size, dtype=np.int64)
    cfg = ExportConfig(split="ratio", valid_ratio=0.1, test_ratio=0.2, seed=3)
    codes = split_interactions(user, item, ts, cfg)
    assert (codes == split_interactions(user, item, ts, cfg)).all()
    for u in range(50):
        mine = codes[user == u]
        assert (mine == 0).sum() >= 1
        n = mine.size
        if n >= 10:
            assert (mine == 2).sum() == min(int(np.floor(n * 0.2 + 0.5)), n - 1)
    assert 0.15 < (codes == 2).mean() < 0.25


def test_temporal_cut_is_global():
    user = np.zeros(10, dtype=np.int64)
    ts = np.arange(10)
    codes = split_interactions(user, np.arange(10), ts, ExportConfig(split="temporal", valid_ratio=0.1, test_ratio=0.2))
    assert codes.tolist() == [0] * 7 + [1] + [2] * 2


def test_given_split_requires_every_row():
    with pytest.raises(ValueError, match="given"):
        split_interactions(np.zeros(2, np.int64), np.arange(2), np.zeros(2, np.int64),
                           ExportConfig(split="given"), np.array([0, -1]))


def test_temporal_cut_with_tied_timestamps():
    """Day-level timestamps tie: the cut is by rank in time, so test gets its share even then."""
    user = np.repeat(np.arange(4), 5)
    item = np.tile(np.arange(5), 4)
    ts = np.array([86_400] * 15 + [172_800] * 5)  # two days
    codes = split_interactions(user, item, ts, ExportConfig(split="temporal", valid_ratio=0.1, test_ratio=0.2))
    assert (codes == 2).sum() == 4 and (codes == 1).sum() == 2
    assert (ts[codes == 2] == 172_800).all()  # the latest four; then ties go by user, then item
    assert (codes[ts == 86_400] == 1).sum() == 1 and codes[14] == 1  # the last tied pair before them: (user 2, item 4)
    with pytest.raises(ValueError, match="timestamps"):
        split_interactions(user, item, np.zeros(20, np.int64), ExportConfig(split="temporal"))


def test_auto_split_uses_the_source_split_only_when_every_row_has_one():
    user, item, ts = np.array([0, 0, 0, 1, 1, 1]), np.array([0, 1, 2, 0, 1, 2]), np.zeros(6, np.int64)
    given = np.array([0, 0, 2, 0, 1, 2])
    assert resolve_split(ExportConfig(), given) == "given"
    assert split_interactions(user, item, ts, ExportConfig(), given).tolist() == given.tolist()
    assert resolve_split(ExportConfig(), np.array([0, -1, 2, 0, 1, 2])) == "ratio"
    assert resolve_split(ExportConfig(), None) == "ratio"
    # an explicit split is honoured even when the source has its own
    assert resolve_split(ExportConfig(split="loo"), given) == "loo"
    for bad in (ExportConfig(split="random"), ExportConfig(valid_ratio=0.5, test_ratio=0.5),
                ExportConfig(test_ratio=-0.1)):
        with pytest.raises(ValueError):
            resolve_split(bad, given)


def test_snapshot_save_replaces_in_place_and_leaves_no_temp_dirs(tmp_path):
    """Saving over a snapshot swaps it whole; a crashed save's leftovers do not block the next one."""
    from kg.snapshot import Snapshot
    from test_gnn import planted_snapshot

    snap = planted_snapshot(num_users=20)
    (tmp_path / ".snap.123-dead.tmp").mkdir()  # what a killed save leaves behind
    path = snap.save(tmp_path / "snap")
    snap.meta["note"] = "second"
    assert snap.save(tmp_path / "snap") == path
    assert Snapshot.load(path).meta["note"] == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".snap.123-dead.tmp", "snap"]


def test_snapshot_keeps_iri_relation_names(tmp_path):
    """Relation names that are IRIs (slashes, ``#``, ``?``) survive the snapshot's ``relations.npz``."""
    from kg.snapshot import Snapshot
    from test_gnn import planted_snapshot

    snap = planted_snapshot(num_users=20)
    names = ["kg:http://rdf.freebase.com/ns/film.film.genre", "kg:http://example.org/p#q?x=1&y"]
    for n, name in enumerate(names):
        snap.relations[name] = np.array([[n], [n + 1]], dtype=np.int64)
        snap.relation_types[name] = ("entity", "entity")
    loaded = Snapshot.load(snap.save(tmp_path / "snap"))
    for name in names:
        assert loaded.relation_types[name] == ("entity", "entity")
        assert loaded.relations[name].tolist() == snap.relations[name].tolist()


def test_snapshot_text_is_utf8_whatever_the_locale(tmp_path):
    """A snapshot saved and loaded under an ASCII locale keeps non-ASCII titles (texts.json is UTF-8)."""
    import subprocess
    import sys

    code = ("import sys; sys.path[:0] = ['tests', '.']; from test_gnn import planted_snapshot; "
            "from kg.snapshot import Snapshot; s = planted_snapshot(num_users=20); "
            "t = '\\u5317\\u4eac caf\\xe9'; s.item_titles[0] = t; p = s.save(sys.argv[1]); "
            "assert Snapshot.load(p).item_titles[0] == t")
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0", "PYTHONCOERCECLOCALE": "0",
           "PYTHONIOENCODING": "ascii"}
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "snap")], env=env, capture_output=True,
                          text=True, cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]


def test_two_exports_in_the_same_second_get_their_own_snapshot_directories(tmp_path):
    from kg.export import _claim_snapshot_dir

    first = _claim_snapshot_dir(tmp_path, "graph-20261202-120000")
    second = _claim_snapshot_dir(tmp_path, "graph-20261202-120000")
    assert (first.name, second.name) == ("graph-20261202-120000", "graph-20261202-120000-2")
    assert first.is_dir() and second.is_dir() and not any(first.iterdir())



def test_a_save_into_a_claimed_directory_never_frees_its_name(tmp_path, monkeypatch):
    """The claimed (empty) directory is replaced in one rename. The swap (name aside, then the new
    one in) would free the name for a moment, and a second export claiming it then would move the
    first snapshot aside and delete it."""
    from pathlib import Path

    from kg.export import _claim_snapshot_dir
    from kg.snapshot import Snapshot
    from test_gnn import planted_snapshot

    claimed = _claim_snapshot_dir(tmp_path, "graph-20261202-120000")
    real_rename, swaps = Path.rename, []
    monkeypatch.setattr(Path, "rename", lambda self, target: (swaps.append(self), real_rename(self, target))[1])
    snap = planted_snapshot(num_users=20)
    assert snap.save(claimed) == claimed and swaps == []
    assert _claim_snapshot_dir(tmp_path, "graph-20261202-120000").name == "graph-20261202-120000-2"
    assert Snapshot.load(claimed).ids["user"] == snap.ids["user"]
    snap.meta["note"] = "again"  # a directory that holds a snapshot is still swapped whole
    assert Snapshot.load(snap.save(claimed)).meta["note"] == "again" and swaps


@pytest.mark.neo4j
def test_the_same_graph_exports_the_same_snapshot_whatever_order_it_was_written_in(graph, tmp_path):
    """Kinds are coded by name and a pair's events are ordered by every column, so ties on ts (the rule
    for undated data) resolve the same way whatever order Neo4j streams the events in."""
    from kg.export import export_snapshot
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kg.schema import apply_schema, wipe
    from kg.snapshot import Snapshot
    from kgrec.config import IngestConfig

    events = [{"user": "u1", "item": "i1", "kind": "view", "weight": 1.0, "ts": 5, "split": "test"},
              {"user": "u1", "item": "i1", "kind": "purchase", "weight": 2.0, "ts": 5, "split": "train"},
              {"user": "u1", "item": "i2", "kind": "view", "weight": 1.0, "ts": 6, "split": "train"},
              {"user": "u2", "item": "i1", "kind": "click", "weight": 1.0, "ts": 7, "split": "train"}]
    snaps = []
    for n, written in enumerate((events, events[::-1])):
        wipe(graph)
        apply_schema(graph)
        records = GraphRecords(users=[{"id": "u1"}, {"id": "u2"}], items=[{"id": "i1"}, {"id": "i2"}],
                               interactions=written)
        ingest(graph, records, IngestConfig(writers=1), progress=False)
        snaps.append(Snapshot.load(export_snapshot(graph, ExportConfig(out_dir=tmp_path / str(n), split="given"), "d")))
    a, b = snaps
    assert a.kinds == b.kinds == ["click", "purchase", "view"]
    for name in ("train", "valid", "test"):
        for col in ("user", "item", "weight", "ts", "kind"):
            assert np.array_equal(getattr(a.splits[name], col), getattr(b.splits[name], col)), (name, col)
    test = a.splits["test"]  # the tie goes to "view" (the last kind by name) and its split; weights summed
    assert (test.user.tolist(), test.item.tolist(), test.weight.tolist(), test.kind.tolist()) == ([0], [0], [3.0], [2])


def test_loo_needs_timestamps_and_temporal_keeps_events_of_unknown_time_in_train():
    user = np.zeros(10, np.int64)
    with pytest.raises(ValueError, match="'loo' needs timestamps"):
        split_interactions(user[:3], np.arange(3), np.zeros(3, np.int64), ExportConfig(split="loo"))
    ts = np.array([0] * 8 + [5, 6])  # eight events of unknown time, two timed ones
    codes = split_interactions(user, np.arange(10), ts, ExportConfig(split="temporal", valid_ratio=0.4, test_ratio=0.4))
    assert codes[:8].tolist() == [0] * 8 and codes[8:].tolist() == [1, 2]


def test_a_discarded_snapshot_hands_the_latest_link_back_to_the_one_before(tmp_path):
    """A retrain whose training fails, or an export that lost its lock, deletes its snapshot; the
    ``-latest`` link then names the newest snapshot left, not nothing."""
    from kg.export import discard_snapshot, point_latest

    names = ["g-20261201-000000", "g-20261202-000000", "g-20261202-000000-2", "g-other-20261203-000000"]
    for name in names:
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text("{}")
    (tmp_path / "g-20261204-000000").mkdir()  # a claimed directory that was never written: not a snapshot
    latest = tmp_path / "g-latest"
    point_latest(tmp_path / names[2], "g")
    assert os.readlink(latest) == names[2]
    discard_snapshot(tmp_path / names[2], "g")
    assert os.readlink(latest) == names[1] and not (tmp_path / names[2]).exists()
    discard_snapshot(tmp_path / names[0], "g")  # not the one linked: the link stays
    assert os.readlink(latest) == names[1]
    discard_snapshot(tmp_path / names[1], "g")
    assert not latest.is_symlink()  # g-other-... belongs to another name


def test_a_pair_linked_twice_is_one_edge_in_the_snapshot():
    """A user who searched one query at two times has two SEARCHED relationships: one edge, as a
    pair's repeated events are one interaction (R-GCN's means would count it twice)."""
    from kg.export import _canonical_edges

    edges = _canonical_edges(np.array([2, 0, 2, 1, 0]), np.array([5, 3, 5, 4, 3]))
    assert edges.tolist() == [[0, 1, 2], [3, 4, 5]]
    assert _canonical_edges(np.array([], np.int64), np.array([], np.int64)).shape == (2, 0)


@pytest.mark.neo4j
def test_the_export_reads_interactions_user_by_user_without_grouping_the_whole_graph(graph):
    """An eager operator outside the per-user subquery would hold every interaction of the graph
    in Neo4j's heap before the first record (bench/bench_export.py: 104 MiB for gowalla)."""
    import cypher

    plan = graph.driver.execute_query("EXPLAIN " + cypher.load("export/interactions"),
                                      database_=graph.database).summary.plan

    def eager_outside_the_subquery(node: dict) -> bool:
        op = node["operatorType"].split("@")[0]
        children = node.get("children", [])
        if op == "Apply":  # its right-hand side runs once per user
            children = children[:1]
        return op.startswith("Eager") or any(eager_outside_the_subquery(c) for c in children)

    assert not eager_outside_the_subquery(plan)


def test_a_snapshot_read_through_the_latest_link_is_one_snapshot(tmp_path, monkeypatch):
    """An export re-points ``-latest`` while a load or a training run reads through it: every file,
    and the artifact's record of what it trained on, come from the snapshot it named first."""
    from kg.export import point_latest
    from kg.snapshot import Snapshot
    from kgrec import pipeline
    from kgrec.config import Config
    from test_gnn import planted_snapshot

    old = planted_snapshot(num_users=4).save(tmp_path / "g-20261201-000000")
    new = planted_snapshot(num_users=10).save(tmp_path / "g-20261202-000000")
    point_latest(old, "g")
    load = np.load

    def load_then_export(*args, **kwargs):  # the newer export lands between two files of the load
        point_latest(new, "g")
        return load(*args, **kwargs)

    monkeypatch.setattr(np, "load", load_then_export)
    snap = Snapshot.load(tmp_path / "g-latest")
    assert len(snap.ids["user"]) == 4 and int(snap.splits["train"].user.max()) == 3
    monkeypatch.setattr(np, "load", load)

    point_latest(old, "g")
    seen = {}

    def train(snap, cfg, out_dir, text, snapshot_path, **kwargs):  # the export lands while it trains
        point_latest(new, "g")
        seen.update(users=len(snap.ids["user"]), path=snapshot_path)
        raise RuntimeError("stop here")

    monkeypatch.setattr("gnn.train.train", train)
    cfg = Config(workdir=tmp_path)
    cfg.train.model = "lightgcn"
    with pytest.raises(RuntimeError, match="stop here"):
        pipeline.train_model(tmp_path / "g-latest", cfg)
    assert seen == {"users": 4, "path": old.resolve()}


def test_a_snapshot_records_the_settings_that_shaped_its_split():
    from kg.export import split_settings

    cfg = ExportConfig(valid_ratio=0.05, test_ratio=0.3, seed=9)
    assert split_settings("ratio", cfg) == {"valid_ratio": 0.05, "test_ratio": 0.3, "seed": 9}
    assert split_settings("temporal", cfg) == {"valid_ratio": 0.05, "test_ratio": 0.3}  # one cut, no draw
    assert split_settings("loo", cfg) == {"seed": 9} and split_settings("given", cfg) == {}


def test_what_a_killed_export_left_is_swept_once_a_day_old(tmp_path):
    """SIGKILL (the OOM killer on a large export) skips every clean-up: the save's hidden temp
    directory and the claimed, never-written snapshot directory stay until the next export sweeps."""
    from kg.export import point_latest, sweep_killed_exports

    old = ["g-20261201-000000", ".g-20261201-000001.4242-0a1b2c3d.tmp", ".g-20261201-000002.7-ff00aa11.old"]
    kept = ["g-20261201-000003",  # a whole snapshot, however old
            ".gx-20261201-000000.1-00000000.tmp", "gx-20261201-000000",  # another name's
            "notes"]
    for name in old + kept:
        (tmp_path / name).mkdir()
    (tmp_path / old[1] / "ids.json").write_text("{}")  # a save cut short
    (tmp_path / "g-20261201-000003" / "meta.json").write_text("{}")
    point_latest(tmp_path / "g-20261201-000003", "g")
    day_old = time.time() - 2 * 86_400
    for name in old + kept:
        os.utime(tmp_path / name, (day_old, day_old))
    (tmp_path / "g-20261202-000000").mkdir()  # claimed a moment ago: an export still under way
    stray = tmp_path / ".g-latest.4242-0a1b2c3d.tmp"  # killed between the link and its rename
    stray.symlink_to("g-20261201-000003")
    os.utime(stray, (day_old, day_old), follow_symlinks=False)
    removed = sweep_killed_exports(tmp_path, "g")
    assert sorted(p.name for p in removed) == sorted(old + [stray.name])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(kept + ["g-20261202-000000", "g-latest"])


def test_searches_made_once_held_out_events_began_are_left_out_of_a_time_split(graph, tmp_path):
    """Under loo and temporal, a search made after the user's held-out events began would tell
    the R-GCN what they are about (a query relevant to the held-out item): left out of the snapshot.
    A random split has no such time; an undated search stays, as undated events do."""
    from kg.export import export_snapshot
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kg.schema import apply_schema, wipe
    from kg.snapshot import Snapshot
    from kgrec.config import IngestConfig

    wipe(graph)
    apply_schema(graph)
    users = [{"id": f"u{n}"} for n in range(3)]
    items = [{"id": f"i{n}"} for n in range(6)]
    events = [{"user": u["id"], "item": f"i{n}", "ts": 10 * (n + 1) + k} for k, u in enumerate(users) for n in range(5)]
    queries = [{"id": f"q{n}", "text": f"query {n}"} for n in range(4)]
    searches = [{"user": "u0", "query": "q0", "ts": 5},    # before everything
                {"user": "u0", "query": "q1", "ts": 40},   # u0's valid event is at 40: from then on, held out
                {"user": "u0", "query": "q2", "ts": 0},    # time unknown
                {"user": "u1", "query": "q3", "ts": 35},
                {"user": "u2", "query": "q3", "ts": 41}]  # u2's valid event is at 42; the temporal cut is 41
    records = GraphRecords(users=users, items=items, queries=queries, interactions=events, user_queries=searches,
                           query_items=[{"query": "q1", "item": "i4", "relevance": 1.0}])
    ingest(graph, records, IngestConfig(writers=1), progress=False)

    def searched(split: str) -> set[tuple[str, str]]:
        snap = Snapshot.load(export_snapshot(graph, ExportConfig(out_dir=tmp_path / split, split=split), "s"))
        src, dst = snap.relations["searched"]
        return {(snap.ids["user"][a], snap.ids["query"][b]) for a, b in zip(src.tolist(), dst.tolist())}

    everything = {(s["user"], s["query"]) for s in searches}
    assert searched("ratio") == everything
    assert searched("loo") == everything - {("u0", "q1")}  # each user's own: from 40 for u0, 42 for u2
    # temporal: of 15 events the latest 3 (50, 51, 52) go to test, the 2 before (41, 42) to valid
    assert searched("temporal") == everything - {("u2", "q3")}


def test_a_discarded_snapshot_is_unlinked_before_it_is_deleted(tmp_path, monkeypatch):
    """A training run reading through ``-latest`` meanwhile finds the snapshot before, never a
    half-deleted one; the link's temporary name is the process's own (two exports do not collide)."""
    import shutil

    from kg import export
    from kg.export import discard_snapshot, point_latest

    for name in ("g-20261201-000000", "g-20261202-000000"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text("{}")
    point_latest(tmp_path / "g-20261202-000000", "g")
    rmtree = shutil.rmtree
    seen = []

    def watch(path, *args, **kwargs):
        seen.append(os.readlink(tmp_path / "g-latest"))
        return rmtree(path, *args, **kwargs)

    monkeypatch.setattr(export.shutil, "rmtree", watch)
    discard_snapshot(tmp_path / "g-20261202-000000", "g")
    assert seen == ["g-20261201-000000"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["g-20261201-000000", "g-latest"]


def test_a_relationship_written_outside_kgrec_without_a_relation_is_named_not_a_crash(graph, tmp_path):
    """Browser users can write into the graph: a HAS_ATTRIBUTE without `relation` crashed the export
    with a TypeError ('has:' + null sorted against names); now one line says which and what to do."""
    from kg.errors import KgError
    from kg.export import export_snapshot
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kgrec.config import IngestConfig

    ingest(graph, GraphRecords(users=[{"id": "u0"}], items=[{"id": "i0"}, {"id": "i1"}],
                               interactions=[{"user": "u0", "item": "i0", "ts": 1}, {"user": "u0", "item": "i1", "ts": 2}]),
           IngestConfig(), progress=False)
    graph.driver.execute_query("MATCH (i:Item {id: 'i0'}) CREATE (i)-[:HAS_ATTRIBUTE]->(:Entity {id: 'cat:x', type: 'category'})",
                               database_=graph.database)
    with pytest.raises(KgError, match=r"'i0' -> 'cat:x'\) has no `relation` property"):
        export_snapshot(graph, ExportConfig(out_dir=tmp_path, split="ratio"), "s")
    assert not list(tmp_path.iterdir())  # no snapshot left, nor a temporary one


def test_a_node_written_outside_kgrec_without_an_id_is_named_not_a_crash(graph, tmp_path):
    """An Item made in Browser without an id dropped out of collect(i.id), so its user's parallel
    lists fell out of step, and the sort of the ids crashed on None (TypeError); an integer id
    crashed it too. One line now says which label, how many, and how to find them."""
    from kg.errors import KgError
    from kg.export import export_snapshot
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kgrec.config import IngestConfig

    ingest(graph, GraphRecords(users=[{"id": "u0"}], items=[{"id": "i0"}],
                               interactions=[{"user": "u0", "item": "i0", "ts": 1}]), IngestConfig(), progress=False)
    for made in ("MATCH (u:User {id: 'u0'}) CREATE (u)-[:INTERACTED {ts: 2}]->(:Item {title: 'no id'})",
                 "CREATE (:Query {id: 7, text: 'an integer id'})"):
        graph.driver.execute_query(made, database_=graph.database)
        label = "Item" if "Item" in made else "Query"
        with pytest.raises(KgError, match=f"1 {label} node\\(s\\) have no string `id` .*MATCH \\(n:{label}\\)"):
            export_snapshot(graph, ExportConfig(out_dir=tmp_path, split="ratio"), "s")
        graph.driver.execute_query(f"MATCH (n:{label}) WHERE n.id IS NULL OR NOT n.id IS :: STRING DETACH DELETE n",
                                   database_=graph.database)
    assert not list(tmp_path.iterdir())
    export_snapshot(graph, ExportConfig(out_dir=tmp_path, split="ratio"), "s")  # once mended


def test_loo_holds_out_dated_events_only():
    """An undated event (ts 0) sorts first but is not the earliest: loo held out a user's undated
    events as their "latest" when fewer than two were dated (dated live events on undated data)."""
    user = np.array([0, 0, 0, 1, 1, 1, 2, 2, 2, 2])
    item = np.arange(10)
    ts = np.array([0, 0, 0, 100, 200, 300, 0, 0, 50, 0])
    codes = split_interactions(user, item, ts, ExportConfig(split="loo"))
    assert codes[:3].tolist() == [0, 0, 0]  # none dated: all train, as under temporal
    assert codes[3:6].tolist() == [0, 1, 2]
    assert codes[6:].tolist() == [0, 0, 0, 0]  # one dated event: too few to hold out valid and test
    two = split_interactions(np.array([0, 0, 0]), np.arange(3), np.array([0, 20, 10]), ExportConfig(split="loo"))
    assert two.tolist() == [0, 2, 1]  # the undated event trains, the dated two are held out
    before_1970 = split_interactions(np.zeros(4, np.int64), np.arange(4), np.array([-3e8, -2e8, -1e8, 0]).astype(np.int64),
                                     ExportConfig(split="loo"))
    assert before_1970.tolist() == [0, 1, 2, 0]  # negative times are dated: 0 sorted after them, not held out


def test_export_settings_are_checked_before_the_graph_is_read(graph, tmp_path):
    from kg.export import check_export_config, export_snapshot
    from kg.ingest import ingest
    from kg.records import GraphRecords
    from kgrec.config import IngestConfig

    for bad, said in (({"seed": -1}, "export.seed must be a whole number >= 0, got -1"),
                      ({"seed": 1.5}, "export.seed"), ({"split": "LOO"}, "unknown split 'LOO'"),
                      ({"valid_ratio": 0.5, "test_ratio": 0.5}, "sum to less than 1")):
        with pytest.raises(ValueError, match=said):
            check_export_config(ExportConfig(**bad))
    read = []
    graph.stream = lambda *a, **k: read.append(a) or iter(())  # the instance's, for this test only
    try:
        with pytest.raises(ValueError, match="export.seed"):
            export_snapshot(graph, ExportConfig(out_dir=tmp_path, split="ratio", seed=-1), "s")
    finally:
        del graph.stream
    assert not read and not list(tmp_path.iterdir())
    # a source's split with a pair in two splits: the latest's, counted
    ingest(graph, GraphRecords(users=[{"id": "u0"}], items=[{"id": "i0"}, {"id": "i1"}],
                               interactions=[{"user": "u0", "item": "i0", "ts": 10, "split": "train"},
                                             {"user": "u0", "item": "i0", "ts": 50, "split": "test"},
                                             {"user": "u0", "item": "i1", "ts": 20, "split": "train"}]),
           IngestConfig(), progress=False)
    from kg.snapshot import Snapshot

    snap = Snapshot.load(export_snapshot(graph, ExportConfig(out_dir=tmp_path, split="given"), "s"))
    assert snap.meta["pairs_across_splits"] == 1
    assert snap.splits["test"].item.tolist() == [list(snap.ids["item"]).index("i0")]
