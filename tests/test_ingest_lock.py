"""The graph's ingest lock (kg.lock) and per-feed watermarks, on the real test server."""
from __future__ import annotations

import logging
import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from kg.ingest import forget_user, get_watermark, graph_counts, ingest, watermark_key
from kg.lock import (INGEST_LOCK, LockedError, LockLostError, break_lock, graph_lock, lock_holder,
                     process_identity)
from kg.records import GraphRecords
from kgrec.config import IngestConfig


def _records(n_users: int = 30, n_items: int = 20) -> GraphRecords:
    users = [{"id": f"u{u}"} for u in range(n_users)]
    items = [{"id": f"i{i}", "title": f"item {i}"} for i in range(n_items)]
    events = [{"user": f"u{u}", "item": f"i{(u * 7 + j) % n_items}", "kind": "click", "weight": 1.0, "ts": 10 + j}
              for u in range(n_users) for j in range(5)]
    return GraphRecords(users=users, items=items, interactions=events)


def _hold(graph, owner: str, host: str = "elsewhere.example", pid: int = 1, proc: str = "", idle_s: int = 0) -> None:
    """A lock as another writer left it, its last heartbeat ``idle_s`` seconds ago."""
    graph.driver.execute_query(
        "CREATE (:KgrecLock {name: $lock, owner: $owner, host: $host, pid: $pid, proc: $proc, "
        "since: datetime() - duration({seconds: $idle}), renewed: datetime() - duration({seconds: $idle})})",
        lock=INGEST_LOCK, owner=owner, host=host, pid=pid, proc=proc, idle=idle_s, database_=graph.database)


def _interactions(graph) -> int:
    return graph.driver.execute_query("MATCH ()-[r:INTERACTED]->() RETURN count(r) AS n",
                                      database_=graph.database).records[0]["n"]


def test_an_ingest_fails_while_another_holds_the_lock_and_writes_nothing(graph):
    with graph_lock(graph):
        holder = lock_holder(graph)
        assert holder["pid"] == os.getpid() and holder["host"] == socket.gethostname()
        assert holder["proc"] == process_identity(os.getpid()) and holder["idle_s"] <= 1
        with pytest.raises(LockedError, match=rf"process {holder['pid']} on .*nothing was written.*kgrec unlock"):
            ingest(graph, _records(), IngestConfig(), progress=False)
        with pytest.raises(LockedError):
            forget_user(graph, "u1")
        assert graph_counts(graph).get("User", 0) == 0
    assert lock_holder(graph) is None  # released on leaving the block
    assert ingest(graph, _records(), IngestConfig(), progress=False)["written"]["interactions"] == 150
    assert lock_holder(graph) is None


def test_the_lock_is_released_when_the_ingest_fails(graph):
    bad = GraphRecords(interactions=[{"user": "u1", "item": "i1", "kind": "click", "weight": 1.0, "ts": "late"}])
    with pytest.raises(ValueError):
        ingest(graph, bad, IngestConfig(), progress=False)
    assert lock_holder(graph) is None


def test_concurrent_ingests_of_the_same_new_users_wait_and_write_each_event_once(graph):
    records, cfg = _records(), IngestConfig(batch_size=7, lock_wait_s=120)
    reports, errors = [], []

    def load() -> None:
        try:
            reports.append(ingest(graph, records, cfg, progress=False))
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=load) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors and len(reports) == 3
    assert sorted(r["relationships_created"] for r in reports) == [0, 0, 150]
    assert _interactions(graph) == 150


def test_a_lock_left_by_a_dead_process_of_this_machine_is_taken_over(graph, caplog):
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    identity = process_identity(child.pid)
    child.kill()
    child.wait()
    assert identity is not None and process_identity(child.pid) is None
    _hold(graph, "gone", socket.gethostname(), child.pid, identity)
    with caplog.at_level(logging.WARNING, logger="kg.lock"):
        ingest(graph, _records(2, 2), IngestConfig(), progress=False)
    assert f"process {child.pid} on {socket.gethostname()}" in caplog.text and "which is gone" in caplog.text
    assert lock_holder(graph) is None


def test_a_live_holder_is_never_taken_over_whatever_its_host_name(graph):
    """A container that shares this host name, or a pid reused by a younger process, is told apart
    by the process identity (boot id, pid namespace, start time)."""
    me = process_identity(os.getpid())
    boot, namespace, pid, start = me.split(":")
    other_container = f"{boot}:{int(namespace) + 1}:{pid}:{start}"
    _hold(graph, "twin", socket.gethostname(), int(pid), other_container)
    with pytest.raises(LockedError, match="nothing was written"):
        ingest(graph, _records(2, 2), IngestConfig(), progress=False)
    with pytest.raises(LockedError, match="alive"):
        break_lock(graph)
    assert lock_holder(graph)["owner"] == "twin"
    graph.write("lock/release", lock=INGEST_LOCK, owner="twin")
    reused = f"{boot}:{namespace}:{pid}:{int(start) - 1}"  # this pid, but an older process's start time
    _hold(graph, "reused", socket.gethostname(), int(pid), reused)
    assert break_lock(graph)["owner"] == "reused"


def test_a_lock_held_on_another_machine_blocks_until_stale_or_forced(graph):
    _hold(graph, "far", idle_s=5)
    with pytest.raises(LockedError, match="process 1 on elsewhere.example"):
        ingest(graph, _records(2, 2), IngestConfig(lock_wait_s=1.0), progress=False)
    with pytest.raises(LockedError, match="alive"):
        break_lock(graph)
    assert break_lock(graph, force=True)["owner"] == "far"
    assert break_lock(graph) is None
    _hold(graph, "crashed", idle_s=600)  # its heartbeat stopped ten minutes ago
    assert ingest(graph, _records(2, 2), IngestConfig(), progress=False)["written"]["users"] == 2
    assert lock_holder(graph) is None


def test_the_holder_renews_its_lock_while_it_works(graph):
    def renewed_within(seconds: float) -> bool:
        deadline = time.monotonic() + seconds
        while lock_holder(graph)["idle_s"] > 1:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        return True

    with graph_lock(graph, heartbeat_s=0.2):
        for _ in range(2):  # the lock made to look an hour old is renewed, twice over
            graph.driver.execute_query("MATCH (l:KgrecLock) SET l.renewed = datetime() - duration('PT1H')",
                                       database_=graph.database)
            assert lock_holder(graph)["idle_s"] >= 3599
            assert renewed_within(30)


def test_a_holder_whose_lock_was_taken_over_stops_before_its_next_write(graph):
    """The heartbeat finds the lock gone (another writer took it over after a long partition, or
    `kgrec unlock --force`): the holder's next batch raises instead of writing beside the new holder."""
    from kg.ingest import _ingest_locked, _normalise_interactions
    from kg.interaction_writer import write_interactions

    with graph_lock(graph, heartbeat_s=0.2) as lease:
        lease.check()  # held
        graph.driver.execute_query("MATCH (l:KgrecLock) DELETE l", database_=graph.database)
        _hold(graph, owner="newcomer")
        deadline = time.monotonic() + 30
        while lease.lost is None and time.monotonic() < deadline:
            time.sleep(0.05)
        with pytest.raises(LockLostError, match="took it over.*an ingest run again completes its load"):
            lease.check()
        with pytest.raises(LockLostError):
            _ingest_locked(graph, _records(), IngestConfig(), False, False, None, lease)
        with pytest.raises(LockLostError):
            write_interactions(graph, _normalise_interactions(_records().interactions), 2, 10, progress=False,
                               check=lease.check)
    assert graph_counts(graph).get("User", 0) == 0 and _interactions(graph) == 0
    assert lock_holder(graph)["owner"] == "newcomer"  # leaving the block released nothing of the new holder's


def test_a_holder_that_cannot_renew_gives_up_before_others_may_take_over(graph):
    """No renewal for 0.8 x stale_s (the database unreachable): the lease expires on the holder's side
    before the lock looks stale to anyone else."""
    with graph_lock(graph, heartbeat_s=3600, stale_s=60) as lease:  # no heartbeat in this test's time
        lease.check()
        lease.renewed_at -= lease.expire_s + 0.01  # the last renewal 0.8 x stale_s ago, without waiting for it
        with pytest.raises(LockLostError, match="could not be renewed"):
            lease.check()
    assert lock_holder(graph) is None


def test_each_feed_skips_only_its_own_old_events(graph):
    def events(*rows):
        return GraphRecords(users=[{"id": "a"}], items=[{"id": "x"}, {"id": "y"}],
                            interactions=[{"user": "a", "item": i, "kind": k, "weight": 1.0, "ts": ts}
                                          for i, k, ts in rows])

    assert ingest(graph, events(("x", "click", 100)), IngestConfig(), feed="clicks",
                  progress=False)["watermark"] == 100
    # orders lag behind clicks: their first incremental load is not cut at the clicks' watermark
    orders = ingest(graph, events(("y", "order", 40)), IngestConfig(), incremental=True, feed="orders",
                    progress=False)
    assert orders["skipped_old"] == 0 and orders["relationships_created"] == 1 and orders["watermark"] == 40
    told = []
    late_click = ingest(graph, events(("y", "click", 50)), IngestConfig(), incremental=True, feed="clicks",
                        progress=False, on_skipped=lambda rows, mark: told.append(([r["item"] for r in rows], mark)))
    assert late_click["skipped_old"] == 1 and late_click["relationships_created"] == 0
    assert told == [(["y"], 100)]  # the skipped events are handed back, to be accounted for
    assert get_watermark(graph, "clicks") == 100 and get_watermark(graph, "orders") == 40
    assert get_watermark(graph) is None  # the shared watermark is separate from every named feed


def test_cli_reports_a_held_lock_in_one_line_and_unlock_removes_it(graph, neo4j_config, tmp_path, monkeypatch,
                                                                   capsys):
    import json

    from kg.neo4j_server import read_password
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    monkeypatch.setenv("NEO4J_URI", neo4j_config.bolt_uri)
    monkeypatch.setenv("NEO4J_PASSWORD", read_password(neo4j_config))
    _hold(graph, "far", pid=4242)
    argv = ["ingest", "synthetic", "--users", "20", "--items", "15", "--no-quality", "--feed", "nightly"]
    assert main([*argv, "--wait", "0.5"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "process 4242 on elsewhere.example" in err[0] and "kgrec unlock" in err[0]
    assert main(["forget-user", "u1"]) == 2
    assert main(["unlock"]) == 2 and "alive" in capsys.readouterr().err
    assert main(["unlock", "--force"]) == 0
    assert "process 4242 on elsewhere.example" in capsys.readouterr().out
    graph.driver.execute_query(  # a write-back's lock, its holder dead on another host
        "CREATE (:KgrecLock {name: 'writeback', owner: 'wb', host: 'far', pid: 7, proc: '', since: datetime(), "
        "renewed: datetime() - duration({seconds: 600})})", database_=graph.database)
    assert main(["unlock"]) == 0 and "the ingest lock was free" in capsys.readouterr().out
    assert main(["unlock", "--lock", "writeback"]) == 0 and "removed the writeback lock" in capsys.readouterr().out
    assert main(argv) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["feed"] == "nightly" and report["watermark"] == get_watermark(graph, "nightly") is not None
    with pytest.raises(SystemExit):
        main([*argv, "--wait", "-1"])
    # the same load again, incremental, after the feed's watermark moved on: its older events are
    # listed beside the quarantine with the reason, never dropped silently
    graph.write("ingest/set_watermark", key=watermark_key("nightly"), value=report["watermark"] + 1)
    assert main([*argv, "--incremental"]) == 0
    out, err = capsys.readouterr()
    again = json.loads(out)
    skipped = [json.loads(line) for line in Path(again["skipped_file"]).read_text().splitlines()]
    assert again["skipped_old"] == len(skipped) > 0 and "older than the watermark" in err
    assert skipped[0]["reason"].startswith(f"older than the watermark {report['watermark'] + 1} of feed nightly")
    assert main([*(a for a in argv if a != "--no-quality"), "--incremental"]) == 0
    summarised = json.loads(capsys.readouterr().out)  # the quality summary describes the events loaded
    assert summarised["skipped_old"] > 0
    assert summarised["quality"]["events"] == summarised["written"].get("interactions", 0)
    # each load's reconciliation is kept: the earlier ones moved aside under their time
    assert list(Path(again["reconciliation_file"]).parent.glob("synthetic.2*.reconciliation.json"))


def test_the_cli_reads_its_source_before_it_takes_the_lock(graph, neo4j_config, tmp_path, monkeypatch, capsys):
    """`kgrec ingest` reads and governs its source without the lock, so a long parse holds up no
    other writer; the lock is taken before the graph is looked up or anything is written. A lock
    busy at the start fails a load without a wait before its source is read."""
    import kg.sources
    from kg.neo4j_server import read_password
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    monkeypatch.setenv("NEO4J_URI", neo4j_config.bolt_uri)
    monkeypatch.setenv("NEO4J_PASSWORD", read_password(neo4j_config))
    events = tmp_path / "events.tsv"
    events.write_text("user\titem\tts\nu1\ti1\t10\nu2\ti1\t11\n")
    seen: list[object] = []
    real_load = kg.sources.load_source

    def load_source(*args, known=None, **kwargs):
        seen.append(lock_holder(graph))  # while the file is read
        looked_up = known
        if known is not None:
            def looked_up(kind, ids):
                found = known(kind, ids)
                seen.append(lock_holder(graph)["pid"])  # the lookup is made under the lock
                return found
        return real_load(*args, known=looked_up, **kwargs)

    monkeypatch.setattr(kg.sources, "load_source", load_source)
    mapping = tmp_path / "map.toml"
    mapping.write_text('[[files]]\npath = "events.tsv"\nrole = "interactions"\ndelimiter = "\\t"\n'
                       'user = "user"\nitem = "item"\ntimestamp = "ts"\ncreate_nodes = true\n')
    argv = ["ingest", "tabular", str(tmp_path), "--mapping", str(mapping), "--no-quality"]
    assert main(argv) == 0, capsys.readouterr().err
    assert seen[0] is None and os.getpid() in seen[1:] and lock_holder(graph) is None
    assert _interactions(graph) == 2
    _hold(graph, "far", pid=4242)
    seen.clear()
    assert main(argv) == 2 and seen == []  # refused before reading
    assert "process 4242 on elsewhere.example" in capsys.readouterr().err
    assert main([*argv, "--wait", "0.5"]) == 2  # read (while the other held the lock), then waited for it
    assert [holder["pid"] for holder in seen] == [4242]
    assert len(list((tmp_path / "quarantine").glob("*.reconciliation.json"))) == 1  # none written for them
    assert main(["unlock", "--force"]) == 0


def test_a_terminated_command_releases_the_lock_on_its_way_out(graph, neo4j_config):
    """kgrec's commands turn SIGTERM (kill, a scheduler's timeout) into an orderly exit."""
    import signal

    from kg.neo4j_server import read_password

    code = ("import sys, time\n"
            "from kg.connection import connect\nfrom kg.lock import graph_lock\n"
            "from kgrec.cli import _sigterm_unwinds\n"
            "from kgrec.config import load_config\n"
            "cfg = load_config(env={'NEO4J_URI': sys.argv[1], 'NEO4J_PASSWORD': sys.argv[2]})\n"
            "with connect(cfg.neo4j) as g, _sigterm_unwinds(), graph_lock(g):\n"
            "    print('held', flush=True)\n    time.sleep(120)\n")
    import select

    proc = subprocess.Popen([sys.executable, "-c", code, neo4j_config.bolt_uri, read_password(neo4j_config)],
                            stdout=subprocess.PIPE, text=True)
    try:
        assert select.select([proc.stdout], [], [], 120)[0], "the child never took the lock"
        assert proc.stdout.readline().strip() == "held"
        assert lock_holder(graph)["pid"] == proc.pid
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 128 + signal.SIGTERM
        assert lock_holder(graph) is None
    finally:
        proc.kill()
        proc.wait()


def test_a_signal_while_the_writers_run_stops_them_after_their_batch_in_flight(graph):
    """SIGTERM (SystemExit from kgrec's handler) or Ctrl-C lands in the main thread while it waits for
    the writers: they stop after the batch they are writing, not once the whole load is written."""
    import signal
    import threading

    from kg.ingest import _normalise_interactions, ingest
    from kg.interaction_writer import write_interactions

    records = _records(n_users=200, n_items=50)
    ingest(graph, GraphRecords(users=records.users, items=records.items), IngestConfig(), progress=False)
    events = _normalise_interactions(records.interactions)
    batches: list[int] = []

    def check() -> None:  # before each batch; the third one signals the main thread
        batches.append(1)
        if len(batches) == 3:
            signal.pthread_kill(threading.main_thread().ident, signal.SIGUSR1)
            time.sleep(0.5)  # the handler runs while this writer still has its batch to write

    def interrupt(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGUSR1, interrupt)
    try:
        with pytest.raises(KeyboardInterrupt):
            write_interactions(graph, events, 2, 5, progress=False, check=check)  # 1,000 events: ~200 batches
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert len(batches) <= 5 and _interactions(graph) <= 5 * 5


def test_a_lease_is_lost_once_its_block_is_left(graph):
    """A writer thread that outlives the block (the main thread left it on a second signal) stops at its
    next check instead of writing beside the next holder."""
    with graph_lock(graph) as lease:
        lease.check()
    assert lock_holder(graph) is None
    with pytest.raises(LockLostError, match="it was released"):
        lease.check()


def test_a_write_the_driver_retries_checks_the_lease_again_first(graph):
    """The driver retries a failed transaction for up to 30 s; the lock may be lost meanwhile. The
    lease is checked at the start of every attempt, so a lost lock stops the retry uncommitted."""
    import neo4j.exceptions

    attempts, checks = [], []

    def flaky(tx):  # the first attempt fails as a dropped connection would
        attempts.append(1)
        if len(attempts) == 1:
            raise neo4j.exceptions.SessionExpired("connection lost")
        return tx.run("CREATE (:RetryProbe) RETURN 1").consume().counters.nodes_created

    assert graph.transaction(flaky, lambda: checks.append(1)) == 1 and len(checks) == len(attempts) == 2

    def lost() -> None:
        if checks:
            raise LockLostError("lost it")
        checks.append(1)

    checks.clear()
    attempts.clear()
    with pytest.raises(LockLostError):
        graph.transaction(flaky, lost)  # the retry finds the lease lost: never sent again
    assert len(attempts) == 1
    created = graph.driver.execute_query("MATCH (p:RetryProbe) DETACH DELETE p RETURN count(*) AS n",
                                         database_=graph.database).records[0]["n"]
    assert created == 1  # the first call's node only


def test_a_holder_proc_hides_is_alive_while_its_pid_runs(monkeypatch):
    """With /proc mounted hidepid, another user's process has no readable identity: the holder is
    alive while its pid exists (only the heartbeat can tell more), gone once it does not."""
    import kg.lock as lock_module
    from kg.lock import holder_is_gone

    child = subprocess.Popen(["sleep", "60"])
    try:
        identity = process_identity(child.pid)
        real = lock_module.process_identity
        monkeypatch.setattr(lock_module, "process_identity", lambda pid: None if pid == child.pid else real(pid))
        holder = {"idle_s": 3.0, "proc": identity}
        assert not holder_is_gone(holder)
    finally:
        child.kill()
        child.wait()
    assert holder_is_gone(holder)


def test_a_holder_that_renews_after_it_was_seen_stale_keeps_its_lock(graph):
    """Taking over deletes the lock only if its heartbeat is still the one seen stale: a renewal
    landing between the look and the delete keeps the lock its holder's."""
    _hold(graph, "slow", idle_s=600)
    seen = lock_holder(graph)
    graph.write("lock/renew", lock=INGEST_LOCK, owner="slow")  # it came back just now
    assert graph.write("lock/take_over", lock=INGEST_LOCK, owner="slow", beat=seen["beat"]).nodes_deleted == 0
    assert lock_holder(graph)["owner"] == "slow"
    with pytest.raises(LockedError, match="alive"):
        break_lock(graph)
    graph.write("lock/release", lock=INGEST_LOCK, owner="slow")


def test_a_busy_write_back_lock_names_the_commands_that_apply_to_it(graph):
    """The refusal told a write-back to retry with --wait, which `kgrec writeback` lacked, or to run
    `kgrec unlock`, which frees the ingest lock and left the write-back's in place."""
    from kg.lock import WRITEBACK_LOCK, raise_if_busy
    from kgrec.cli import build_parser

    graph.driver.execute_query(
        "CREATE (:KgrecLock {name: $lock, owner: 'wb', host: 'elsewhere.example', pid: 7, proc: '', "
        "since: datetime(), renewed: datetime()})", lock=WRITEBACK_LOCK, database_=graph.database)
    _hold(graph, "far")
    try:
        with pytest.raises(LockedError, match="or now with `kgrec unlock --lock writeback`"):
            raise_if_busy(graph, WRITEBACK_LOCK)
        with pytest.raises(LockedError, match="or now with `kgrec unlock`\\."):
            raise_if_busy(graph, INGEST_LOCK)
    finally:  # live holders: a test that does not wipe the graph first (the bulk import's) would meet them
        graph.driver.execute_query("MATCH (l:KgrecLock) DELETE l", database_=graph.database)
    assert build_parser().parse_args(["writeback", "--wait", "5"]).lock_wait_s == 5.0
