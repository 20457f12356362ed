"""The offline bulk path (neo4j-admin database import) against the managed test server."""
from __future__ import annotations

import sys

import pytest

from kg.bulk_import import bulk_import
from kg.connection import connect
from kg.errors import DatasetMixError
from kg.ingest import check_dataset, get_watermark, graph_counts, ingest
from kg.synthetic import SyntheticSpec, generate
from kgrec.config import IngestConfig, Neo4jConfig

pytestmark = pytest.mark.neo4j


def test_bulk_import_then_merge_changes_nothing(neo4j_config):
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    records = generate(SyntheticSpec(num_users=120, num_items=60, num_queries=10))
    report = bulk_import(records, neo4j_config, dataset="bulk-set")
    assert report["import_seconds"] > 0
    with connect(neo4j_config) as g:
        # the dataset is recorded as ingest records it: a reload passes, another dataset is refused
        check_dataset(g, "bulk-set")
        with pytest.raises(DatasetMixError, match="holds the dataset bulk-set; loading other"):
            check_dataset(g, "other")
        counts = graph_counts(g)
        c = records.counts()
        assert counts["users"] == c["users"] and counts["items"] == c["items"]
        assert counts["relationships"] == (c["interactions"] + c["user_queries"] + c["query_items"]
                                           + c["item_entities"])
        # the first incremental load after it skips what it loaded
        assert get_watermark(g) == max(r["ts"] for r in records.interactions)
        again = ingest(g, records, IngestConfig(), progress=False, dataset="bulk-set")
        assert again["nodes_created"] == 0 and again["relationships_created"] == 0
        # the imported watermark node is the one ingest's MERGE finds (no second one beside it)
        assert g.driver.execute_query("MATCH (m:KgrecMeta) WHERE m.key STARTS WITH 'interactions.max_ts' "
                                      "RETURN count(m) AS n", database_=g.database).records[0]["n"] == 1


def test_bulk_import_refuses_to_replace_the_database_under_a_running_ingest(neo4j_config):
    from kg.lock import LockedError, graph_lock
    from kg.neo4j_server import ManagedNeo4j

    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    server = ManagedNeo4j(neo4j_config)
    pid = server.status().pid
    for name in ("ingest", "writeback"):  # a write-back (a retrain's last stage) holds only its own lock
        with connect(neo4j_config) as g, graph_lock(g, name):
            with pytest.raises(LockedError, match=f"holds the '{name}' lock.*Nothing was changed"):
                bulk_import(generate(SyntheticSpec(num_users=20, num_items=8, num_queries=0)), neo4j_config)
            assert server.status().pid == pid  # the server was left running


def test_bulk_import_holds_the_writers_locks_from_before_the_stop(graph):
    """No writer can start between the check and the stop: the import takes both locks itself (and
    releases them where a failed import leaves the old database)."""
    from kg.bulk_import import _writers_locked_out
    from kg.lock import LockedError, graph_lock, lock_holder

    with pytest.raises(RuntimeError, match="import failed"):
        with _writers_locked_out(graph):
            for name in ("ingest", "writeback"):
                with pytest.raises(LockedError):
                    with graph_lock(graph, name):
                        pass
            raise RuntimeError("import failed")
    assert lock_holder(graph, "ingest") is None and lock_holder(graph, "writeback") is None


def test_bulk_import_keeps_user_and_item_properties(neo4j_config):
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    from kg.records import GraphRecords

    records = GraphRecords(
        users=[{"id": "a", "props": {"age": 31, "gender": "F", "vip": True}}, {"id": "b", "props": {"age": 40}}],
        items=[{"id": "x", "title": "X", "props": {"price": 9.5, "year": 1999}},
               {"id": "y", "title": "Y", "props": {"price": 3.0}}],
        interactions=[{"user": "a", "item": "x", "kind": "click", "weight": 1.0, "ts": 5}])
    bulk_import(records, neo4j_config)
    with connect(neo4j_config) as g:
        users = {r["id"]: r for r in g.driver.execute_query(
            "MATCH (u:User) RETURN u.id AS id, u.age AS age, u.gender AS gender, u.vip AS vip",
            database_=g.database).records}
        items = {r["id"]: r for r in g.driver.execute_query(
            "MATCH (i:Item) RETURN i.id AS id, i.price AS price, i.year AS year", database_=g.database).records}
    assert (users["a"]["age"], users["a"]["gender"], users["a"]["vip"]) == (31, "F", True)
    assert (users["b"]["age"], users["b"]["gender"]) == (40, None)
    assert (items["x"]["price"], items["x"]["year"], items["y"]["price"]) == (9.5, 1999, 3.0)
    assert type(items["y"]["price"]) is float and type(items["x"]["year"]) is int


def test_bulk_import_refuses_a_property_of_mixed_types_before_anything_changes(tmp_path):
    """An import column has one type: a key of mixed types was one string column (31 stored as "31",
    True as "True") and an int beside floats a double (3 as 3.0), unlike what MERGE stores, so
    ingesting the same source afterwards rewrote them."""
    from kg.bulk_import import write_import_csvs
    from kg.errors import Neo4jSetupError
    from kg.records import GraphRecords

    for rows, said in (([{"id": "a", "props": {"tier": 2}}, {"id": "b", "props": {"tier": "gold"}}], "int, str"),
                       ([{"id": "a", "props": {"vip": True}}, {"id": "b", "props": {"vip": "maybe"}}], "bool, str"),
                       ([{"id": "a", "props": {"price": 3}}, {"id": "b", "props": {"price": 9.5}}], "float, int")):
        with pytest.raises(Neo4jSetupError, match=f"holds values of type {said}.*without --bulk"):
            write_import_csvs(GraphRecords(users=rows), tmp_path / "csv")


def test_bulk_import_refuses_a_property_name_that_is_header_syntax(neo4j_config, tmp_path):
    from kg.bulk_import import write_import_csvs
    from kg.errors import Neo4jSetupError
    from kg.records import GraphRecords

    with pytest.raises(Neo4jSetupError, match="without --bulk"):
        write_import_csvs(GraphRecords(users=[{"id": "a", "props": {"x:ID(User)": 1}}]), tmp_path)


def test_bulk_import_writes_the_watermark_into_the_import(tmp_path):
    """The new database holds the shared watermark from its first moment: a writer that waited out
    the restart finds it (one set after the restart could come too late)."""
    import csv
    import time

    from kg.bulk_import import write_import_csvs
    from kg.ingest import watermark_key
    from kg.records import GraphRecords

    events = [{"user": "a", "item": "x", "ts": 5}, {"user": "a", "item": "y", "ts": 7},
              {"user": "a", "item": "z", "ts": int(time.time()) + 10 * 86_400}]  # a mistyped date: left out
    files = write_import_csvs(GraphRecords(interactions=events), tmp_path / "with")
    with files["meta"].open(newline="") as fh:
        assert list(csv.reader(fh)) == [["key:ID(KgrecMeta)", "value:long"], [watermark_key(), "7"]]
    files = write_import_csvs(GraphRecords(), tmp_path / "without")
    with files["meta"].open(newline="") as fh:
        assert list(csv.reader(fh)) == [["key:ID(KgrecMeta)", "value:long"]]


def test_bulk_import_keeps_text_with_line_breaks_quotes_and_separators(neo4j_config):
    """Descriptions hold line breaks (quoted CSV reads them), quotes, backslashes and ``;`` (the
    import's array separator): the bulk path must store what MERGE stores."""
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    from kg.records import GraphRecords

    texts = {"x": ("Line one\nline two\r\nthree", 'A "quoted" title; with\\backslash'),
             "y": ("", "tab\there, comma, and 'single'"), "z": ("  padded  ", "é ü 中文 🎵")}
    records = GraphRecords(
        items=[{"id": i, "title": title, "description": desc} for i, (desc, title) in texts.items()],
        users=[{"id": "a;b\nc", "props": {"note": "x\ny"}}],
        interactions=[{"user": "a;b\nc", "item": "x", "kind": "click", "weight": 1.0, "ts": 5}])
    other = connect(neo4j_config)  # another process's graph, whose bookmark is of the database replaced
    ingest(other, generate(SyntheticSpec(num_users=40, num_items=20)), IngestConfig(batch_size=10), progress=False)
    bulk_import(records, neo4j_config)
    with other:  # it waited for a transaction id the new database had not reached, then failed (BookmarkTimeout)
        assert graph_counts(other)["items"] == 3
    with connect(neo4j_config) as g:
        got = {r["id"]: (r["d"], r["t"]) for r in g.driver.execute_query(
            "MATCH (i:Item) RETURN i.id AS id, i.description AS d, i.title AS t", database_=g.database).records}
        users = g.driver.execute_query("MATCH (u:User)-[:INTERACTED]->(i:Item) RETURN u.id AS id, u.note AS note",
                                       database_=g.database).records
    assert got == texts
    assert [(u["id"], u["note"]) for u in users] == [("a;b\nc", "x\ny")]


def _small_graph(neo4j_config) -> dict:
    """The test database emptied and loaded with a small synthetic graph; its counts."""
    from kg.schema import wipe

    with connect(neo4j_config) as g:
        wipe(g)
        ingest(g, generate(SyntheticSpec(num_users=30, num_items=20, num_queries=4)), IngestConfig(), progress=False)
        return graph_counts(g)


def _two_items_of_one_id():
    """Records neo4j-admin refuses (a duplicate id fails the import)."""
    from kg.records import GraphRecords

    return GraphRecords(items=[{"id": "x", "title": "X"}, {"id": "x", "title": "X again"}])


def test_a_failed_bulk_import_leaves_the_database_as_it_was(neo4j_config):
    """neo4j-admin deletes its destination first (--overwrite-destination) and leaves a failed
    import's store unusable: the database kgrec replaced was lost, and the server restarted on a
    broken store ("Transaction logs are missing"). The old database is now set aside and put back."""
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    from kg.errors import Neo4jSetupError

    before = _small_graph(neo4j_config)
    with pytest.raises(Neo4jSetupError, match="the database is as it was before"):
        bulk_import(_two_items_of_one_id(), neo4j_config)
    with connect(neo4j_config) as g:
        assert graph_counts(g) == before
    home = neo4j_config.home
    assert not list((home / "data" / "databases").glob("*.before-import"))
    assert not list((home / "data" / "transactions").glob("*.before-import"))


def test_a_failed_bulk_import_whose_restart_fails_reports_both(neo4j_config, monkeypatch):
    """A start that raised after a failed import replaced the importer's error, so the user saw why
    the server did not start, not why the import failed. Both are reported now; the next start puts
    the old database back."""
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    from kg.errors import Neo4jSetupError
    from kg.neo4j_server import ManagedNeo4j

    before = _small_graph(neo4j_config)

    def no_start(self):
        raise Neo4jSetupError("port 7688 is taken (as a stand-in for any failed start)")

    with monkeypatch.context() as m:
        m.setattr(ManagedNeo4j, "start", no_start)
        with pytest.raises(Neo4jSetupError) as failed:
            bulk_import(_two_items_of_one_id(), neo4j_config)
    message = str(failed.value)
    assert "neo4j-admin import failed" in message and "x" in message
    assert "failed to start" in message and "port 7688 is taken" in message
    ManagedNeo4j(neo4j_config).start()
    with connect(neo4j_config) as g:
        assert graph_counts(g) == before


def test_a_bulk_import_killed_at_any_step_leaves_the_old_database_or_the_new_one(tmp_path, monkeypatch):
    """The swap of the database a bulk import replaces, killed (SystemExit, as SIGTERM unwinds; a
    kill -9 leaves the same disk) at every rename, replace and deletion in turn, and then finished by
    the next server start (``store_swap.recover``): the old database whole unless the import had been
    journalled done, else the new one, and nothing else left (no copy, no journal, no .removing-*).
    Before, a failed import lost the old database; then a kill between two renames left an old log
    beside the new store, named as a database to move back."""
    import os
    import shutil

    from kg import store_swap
    from kg.errors import Neo4jSetupError

    def put(home: Path, content: str) -> None:
        for d in store_swap.store_dirs(home, "Neo4j"):
            d.mkdir(parents=True, exist_ok=True)
            (d / "store").write_text(content)

    def state(home: Path) -> list[str]:
        return sorted(f"{p.relative_to(home / 'data')}={(p / 'store').read_text() if (p / 'store').exists() else '-'}"
                      for part in ("databases", "transactions") for p in (home / "data" / part).iterdir()
                      ) + sorted(p.name for p in (home / "data").iterdir() if p.is_file())

    def swap(home: Path, succeeds: bool, done: list[bool]) -> None:
        store_swap.set_aside(home, "Neo4j")
        put(home, "new")  # what the importer writes (half of it, when it fails)
        if succeeds:
            store_swap.mark_imported(home)
            done.append(True)
        store_swap.recover(home)  # the server start that follows

    real = {"rename": os.rename, "replace": os.replace, "rmtree": shutil.rmtree}
    for succeeds in (True, False):
        for kill_at in range(1, 30):
            home = tmp_path / f"{succeeds}-{kill_at}"
            put(home, "old")
            calls = [0]

            def counted(name):
                def call(*args, **kwargs):
                    calls[0] += 1
                    if calls[0] == kill_at:
                        raise SystemExit(143)
                    return real[name](*args, **kwargs)
                return call

            done: list[bool] = []
            with monkeypatch.context() as m:
                m.setattr(os, "rename", counted("rename"))
                m.setattr(os, "replace", counted("replace"))
                m.setattr(shutil, "rmtree", counted("rmtree"))
                try:
                    swap(home, succeeds, done)
                    killed = False
                except SystemExit:
                    killed = True
            store_swap.recover(home)  # the next start
            expected = "new" if done else "old"
            assert state(home) == [f"databases/neo4j={expected}", f"transactions/neo4j={expected}"], (succeeds, kill_at)
            if not killed:
                break
        assert not killed  # every step was reached
    # a copy no journal speaks for: which database to keep is the user's call, and nothing is changed
    home = tmp_path / "orphan"
    put(home, "current")
    (home / "data" / "databases" / "neo4j.before-import").mkdir()
    with pytest.raises(Neo4jSetupError, match="left no journal.*Nothing was changed"):
        store_swap.set_aside(home, "neo4j")
    assert (home / "data" / "databases" / "neo4j" / "store").read_text() == "current"
    # a store directory linked from elsewhere: renaming the link would leave its store where it is
    home = tmp_path / "linked"
    put(home, "current")
    elsewhere = tmp_path / "other-disk"
    (home / "data" / "databases" / "neo4j").rename(elsewhere)
    (home / "data" / "databases" / "neo4j").symlink_to(elsewhere)
    with pytest.raises(Neo4jSetupError, match="is a symbolic link.*Nothing was changed"):
        store_swap.set_aside(home, "neo4j")
    assert state(home) == ["databases/neo4j=current", "transactions/neo4j=current"]
    # a journal no swap wrote (a hand edit, a disk fault): named, with what to do, at every start
    for text in ("", "{}", "[1]", '{"database": "neo4j", "phase": "later"}'):
        (home / "data" / store_swap.JOURNAL).write_text(text)
        with pytest.raises(Neo4jSetupError, match="bulk-import.journal cannot be read .* keep one of each pair"):
            store_swap.recover(home)


def test_a_child_given_the_start_lock_holds_it_past_its_parent(tmp_path):
    """neo4j-admin is given the start lock's descriptor: were kgrec killed (-9) while it imports, no
    `kgrec neo4j start` could recover the swap (and move the old database back) under its writes."""
    import fcntl
    import subprocess

    from kg.neo4j_server import ManagedNeo4j

    server = ManagedNeo4j(Neo4jConfig(home=tmp_path))
    with server.exclusive():
        importer = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(2)"], pass_fds=(server.lock_fd,))
    assert server.lock_fd is None
    with open(tmp_path / "run" / "start.lock", "a") as lock:
        with pytest.raises(BlockingIOError):
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        importer.wait()
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # free once the importer is gone
