"""The periodic retraining job (kgrec.retrain) on the real test server: publish, quality gate,
write-back, pruning, and the locks that keep it from racing ingests or another retrain."""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest

from kg.ingest import ingest
from kg.lock import LockedError, graph_lock
from kg.records import GraphRecords
from kg.synthetic import SyntheticSpec, generate
from kgrec.config import ConfigError, RetrainConfig, TrainConfig
from kgrec.pipeline import model_dir_lock
from kgrec.retrain import RetrainBusyError, _check_metric, _claim_log, prune, retrain

pytestmark = pytest.mark.neo4j
SPEC = SyntheticSpec(num_users=160, num_items=96, num_communities=4, interactions_per_user=16, num_queries=8)


@pytest.fixture
def loaded(graph, config):
    ingest(graph, generate(SPEC), config.ingest, progress=False)
    config.train.model, config.train.epochs, config.train.lr = "lightgcn", 15, 0.02
    config.train.batch_size, config.train.ks = 512, [10, 20]
    return graph, config


def _recommended(graph) -> int:
    return graph.driver.execute_query("MATCH (:User)-[r:RECOMMENDED]->(:Item) RETURN count(r) AS n",
                                      database_=graph.database).records[0]["n"]


def test_retrain_publishes_gates_a_broken_run_and_writes_back(loaded):
    graph, cfg = loaded
    current = Path(cfg.train.out_dir) / "current"
    first = retrain(graph, cfg)
    assert first.published and first.served_version is None and "no served model" in first.decision
    assert first.gate == "publish"
    assert current.resolve().name == first.version and first.new_score > 0.2
    assert first.writeback["users"] == SPEC.num_users and _recommended(graph) == 10 * SPEC.num_users
    saved = json.loads((Path(cfg.workdir) / "retrain" / f"{first.version}.json").read_text())
    assert saved["published"] and saved["snapshot"] == first.snapshot

    cfg.train.epochs, cfg.train.lr = 1, 1e-6  # a run that learns nothing
    broken = retrain(graph, cfg)
    assert not broken.published and broken.served_version == first.version
    assert broken.new_score < 0.9 * first.new_score and "kept the served model" in broken.decision
    assert broken.gate == "reject"
    assert current.resolve().name == first.version  # still serving the good model
    assert (Path(cfg.train.out_dir) / broken.version / "meta.json").is_file()  # kept for inspection

    forced = retrain(graph, cfg, force=True)  # `kgrec retrain --force`
    assert forced.published and forced.decision == "published: --force" and current.resolve().name == forced.version


def test_a_retrain_waits_for_a_train_publishing_but_not_for_another_retrain(tmp_path):
    from kgrec.retrain import _busy

    assert _busy(tmp_path)("123 publish") is None  # a moment: it waits
    for holder in ("123 retrain", "123"):  # another retrain; a lock file written before roles
        with pytest.raises(RetrainBusyError, match=r"another retrain is running on .* \(pid 123\)"):
            _busy(tmp_path)(holder)


def test_a_report_name_another_model_directory_took_is_not_overwritten(tmp_path):
    """Two model directories sharing a workdir can make versions of one name in the same second:
    each report keeps its own file under <workdir>/retrain/."""
    first, second = _claim_log(tmp_path / "retrain", "v"), _claim_log(tmp_path / "retrain", "v")
    assert (first.name, second.name) == ("v.json", "v-2.json") and first.is_file() and second.is_file()


def test_prune_keeps_the_newest_published_versions_the_served_one_and_their_snapshots(loaded):
    graph, cfg = loaded
    cfg.train.epochs, cfg.retrain.keep, cfg.retrain.writeback = 3, 1, False
    out, snaps = Path(cfg.train.out_dir), Path(cfg.export.out_dir)
    hand = out / "20200101-000000-lightgcn"  # a version `kgrec train` made: never retrain's to delete
    hand.mkdir(parents=True)
    (hand / "meta.json").write_text("{}")
    (snaps / "graph-20200101-000000").mkdir(parents=True)  # a snapshot `kgrec export` made
    reports = [retrain(graph, cfg) for _ in range(2)]
    cfg.train.lr = 1e-6  # gated out twice
    reports += [retrain(graph, cfg) for _ in range(2)]
    assert [r.published for r in reports] == [True, True, False, False]
    versions = sorted(p.name for p in out.iterdir() if (p / "meta.json").is_file() and not p.is_symlink())
    # the newest published one (served) and the latest rejected one stay, besides the hand-made one
    assert versions == sorted([hand.name, reports[1].version, reports[3].version])
    assert (out / "current").resolve().name == reports[1].version
    assert str(out / reports[0].version) in reports[1].pruned and reports[0].snapshot in reports[1].pruned
    assert str(out / reports[2].version) in reports[3].pruned and reports[2].snapshot in reports[3].pruned
    left = sorted(p.name for p in snaps.iterdir() if p.is_dir() and not p.is_symlink())
    assert left == sorted(["graph-20200101-000000"] + [Path(r.snapshot).name for r in (reports[1], reports[3])])
    cfg.retrain.keep = 0
    assert prune(cfg) == []


def test_the_gate_needs_a_figure_to_compare_and_pruning_spares_a_pinned_model(loaded):
    graph, cfg = loaded
    cfg.retrain.writeback, cfg.retrain.keep = False, 1
    first = retrain(graph, cfg)
    cfg.serving.model_dir = Path(cfg.train.out_dir) / first.version  # serving pinned to this version
    metrics = Path(cfg.serving.model_dir) / "metrics.json"
    saved = metrics.read_text()
    metrics.write_text(json.dumps({**json.loads(saved), "test": {}}))  # nothing to compare with
    blind = retrain(graph, cfg)
    assert not blind.published and "has no test ndcg@20" in blind.decision
    metrics.write_text("null")  # not an object: every retrain failed after training (AttributeError)
    blind = retrain(graph, cfg)
    assert not blind.published and "has no test ndcg@20" in blind.decision
    metrics.write_text(saved)
    newer = [retrain(graph, cfg) for _ in range(2)]
    assert all(r.published and r.served_version == first.version for r in newer)
    assert Path(cfg.serving.model_dir).is_dir()  # still there, though two newer versions were published
    pinned, cfg.serving.model_dir = cfg.serving.model_dir, Path("models") / first.version  # relative: cron's cwd
    versions = sorted(p.name for p in Path(cfg.train.out_dir).iterdir())
    with pytest.raises(ConfigError, match="is not a model artifact .relative to"):
        retrain(graph, cfg)  # would have published anything, and pruned the pinned version
    assert sorted(p.name for p in Path(cfg.train.out_dir).iterdir()) == versions and pinned.is_dir()


def test_the_model_directory_lock_names_its_live_holder_only(tmp_path):
    """A waiter could read a finished holder's line (a retrain arriving then named a process that
    had exited, or waited for a "publish" long over), or the new holder's empty file ("pid ?")."""
    import os
    import subprocess
    import sys

    lock = tmp_path / ".retrain.lock"
    with model_dir_lock(tmp_path, pytest.fail, "retrain"):
        assert lock.read_text() == f"{os.getpid()} retrain"
    assert lock.read_text() == ""  # a finished holder leaves no line
    slow = ("import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(0.3); f.write(f'{os.getpid()} publish'); f.flush(); "
            "time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", slow, str(lock)], stdout=subprocess.PIPE, text=True)
    seen: list[str] = []

    def busy(line: str) -> None:
        seen.append(line)
        raise RuntimeError("busy")

    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RuntimeError, match="busy"):
            with model_dir_lock(tmp_path, busy, "retrain"):
                pass
    finally:
        holder.kill()
        holder.wait()
    assert seen == [f"{holder.pid} publish"]  # its line, written after it took the lock, not "?"
    # a waiter for a publish asks again when another process takes the lock first: the second of two
    # retrains waiting for one publish ran after the first instead of stopping
    lock.write_text("")
    handover = ("import fcntl, os, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
                "f.write(f'{os.getpid()} publish'); f.flush(); print('locked', flush=True); sys.stdin.readline(); "
                "f.seek(0); f.truncate(); f.write(f'{os.getpid()} retrain'); f.flush(); time.sleep(3)")
    holder = subprocess.Popen([sys.executable, "-c", handover, str(lock)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    seen.clear()

    def waits_for_publish(line: str) -> None:
        seen.append(line)
        if line.endswith("retrain"):
            raise RuntimeError("busy")
        holder.stdin.write("hand over\n")  # the publish is seen: the other retrain takes the lock now
        holder.stdin.flush()

    try:
        assert holder.stdout.readline() == "locked\n"
        with pytest.raises(RuntimeError, match="busy"):
            with model_dir_lock(tmp_path, waits_for_publish, "retrain"):
                pytest.fail("ran after the other retrain")
    finally:
        holder.kill()
        holder.wait()
    assert seen == [f"{holder.pid} publish", f"{holder.pid} retrain"]
    # a holder that clears its line and lets go while the waiter reads: the lock is taken, not
    # refused as held by "pid ?"
    lock.write_text("")
    brief = ("import fcntl, sys, time; f = open(sys.argv[1], 'a+'); fcntl.flock(f, fcntl.LOCK_EX); "
             "print('locked', flush=True); time.sleep(0.3); fcntl.flock(f, fcntl.LOCK_UN); time.sleep(30)")
    holder = subprocess.Popen([sys.executable, "-c", brief, str(lock)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        with model_dir_lock(tmp_path, pytest.fail, "retrain"):
            assert lock.read_text() == f"{os.getpid()} retrain"
    finally:
        holder.kill()
        holder.wait()


def test_retrain_waits_for_nobody_and_changes_nothing_when_busy(loaded, monkeypatch):
    graph, cfg = loaded
    out = Path(cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with model_dir_lock(out, pytest.fail, "retrain"):
        with pytest.raises(RetrainBusyError, match="another retrain is running"):
            retrain(graph, cfg)
    with graph_lock(graph):  # an ingest in progress: no snapshot of half a load
        with pytest.raises(LockedError):
            retrain(graph, cfg)
    assert not (out / "current").exists()
    cfg.train.batch_size = 0  # refused with the config, before an export
    with pytest.raises(ValueError, match="batch_size"):
        retrain(graph, cfg)
    assert not list(Path(cfg.export.out_dir).glob("retrain-*"))
    cfg.train.batch_size = TrainConfig().batch_size

    def fails(*args, **kwargs):
        raise RuntimeError("training failed")

    with monkeypatch.context() as m:  # training fails: its snapshot goes, nothing is published
        m.setattr("kgrec.pipeline.train_model", fails)
        with pytest.raises(RuntimeError, match="training failed"):
            retrain(graph, cfg)
    assert not list(Path(cfg.export.out_dir).glob("retrain-*")) and not (out / "current").exists()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    def stopped(*args, **kwargs):
        raise SystemExit(143)  # SIGTERM, as the CLI raises it

    # stopped between the export and the training: the snapshot was left for good, the ledger of
    # exports (which the leftover sweep goes by) not naming it
    for where, fail in (("kgrec.retrain._record_export", disk_full), ("kg.export.point_latest", stopped)):
        with monkeypatch.context() as m, pytest.raises((OSError, SystemExit)):
            m.setattr(where, fail)
            retrain(graph, cfg)
        assert not list(Path(cfg.export.out_dir).glob("retrain-*")), where
    cfg.retrain.metric = "auc"
    with pytest.raises(ConfigError, match="retrain.metric"):
        retrain(graph, cfg)
    cfg.retrain.metric = "NDCG@020"  # spelled otherwise, the same metric
    assert _check_metric(cfg) == "ndcg@20"
    for key, bad in (("max_drop", float("nan")), ("max_drop", -0.1), ("writeback_k", 0), ("keep", -1),
                     ("min_gate_users", -1), ("snapshot_name", "nightly/retrain"), ("snapshot_name", ""),
                     ("snapshot_name", ".hidden")):  # a name with a path left a whole snapshot each run
        setattr(cfg.retrain, key, bad)
        with pytest.raises(ConfigError, match=f"retrain.{key}"):
            retrain(graph, cfg)
        setattr(cfg.retrain, key, getattr(RetrainConfig(), key))
    cfg.ingest.lock_wait_s = float("nan")  # a deadline that never passes
    with pytest.raises(ValueError, match="lock_wait_s"):
        retrain(graph, cfg)
    assert not (out / "current").exists()


def test_a_retrain_stopped_at_the_gate_leaves_a_version_prune_deletes(loaded, monkeypatch):
    """Stopped after training (SIGTERM is a SystemExit in the CLI), the version is marked as
    retrain's and unpublished, so a later prune removes it; an unreadable report stops no prune."""
    import kgrec.retrain as job

    graph, cfg = loaded
    cfg.retrain.writeback, cfg.retrain.keep = False, 1
    first = retrain(graph, cfg)

    def stop(*args):
        raise SystemExit(143)

    monkeypatch.setattr(job, "_head_to_head", stop)
    with pytest.raises(SystemExit):
        retrain(graph, cfg)
    monkeypatch.undo()
    out = Path(cfg.train.out_dir)
    stopped = [p for p in out.iterdir() if p.name not in (first.version, "current") and not p.name.startswith(".")]
    assert len(stopped) == 1 and (out / "current").resolve().name == first.version
    report = json.loads((stopped[0] / "retrain.json").read_text())
    assert not report["published"] and "stopped before" in report["decision"]
    (out / first.version / "retrain.json").write_text("")  # truncated, say by a full disk
    cfg.train.epochs, cfg.train.lr = 1, 1e-6
    second = retrain(graph, cfg)  # gated out: the latest rejected version is kept, older ones go
    assert not second.published and str(stopped[0]) in second.pruned and not stopped[0].exists()
    assert (out / first.version).is_dir()  # its report unreadable: left alone, not a crash


def test_a_failed_write_back_is_reported_and_the_new_model_serves(loaded, monkeypatch):
    import kgrec.retrain as job

    graph, cfg = loaded

    def refuse(*args):
        raise RuntimeError("the database is read-only")

    monkeypatch.setattr(job, "_write_back", refuse)
    report = retrain(graph, cfg)
    assert report.published and report.writeback is None and "read-only" in report.writeback_error
    assert (Path(cfg.train.out_dir) / "current").resolve().name == report.version
    saved = json.loads((Path(cfg.train.out_dir) / report.version / "retrain.json").read_text())
    assert saved["published"] and saved["writeback_error"] == report.writeback_error

    def killed(*args):  # SIGTERM mid-write-back (kgrec.cli unwinds it as SystemExit)
        raise SystemExit(143)

    monkeypatch.setattr(job, "_write_back", killed)
    with pytest.raises(SystemExit):
        retrain(graph, cfg)
    newest = (Path(cfg.train.out_dir) / "current").resolve()
    saved = json.loads((newest / "retrain.json").read_text())
    assert newest.name != report.version and saved["published"]
    assert saved["writeback_error"].startswith("interrupted: `kgrec writeback --model")
    assert f"-k {cfg.retrain.writeback_k}`" in saved["writeback_error"]  # the lists as long as retrain's

    real_replace = job._replace_text

    def disk_full_once_published(path, text):
        if path.suffix == ".json" and json.loads(text)["published"]:  # the report, not the ledger of exports
            raise OSError(28, "No space left on device")
        real_replace(path, text)

    monkeypatch.setattr(job, "_replace_text", disk_full_once_published)
    written = []
    monkeypatch.setattr(job, "_write_back", lambda *args: written.append(args) or {"users": 1})
    full = retrain(graph, cfg)  # the report not saved once published: the write-back was skipped, and the error raised
    assert full.published and full.writeback == {"users": 1} and full.writeback_error is None and len(written) == 1
    assert (Path(cfg.train.out_dir) / "current").resolve().name == full.version
    monkeypatch.setattr(job, "_replace_text", real_replace)
    written.clear()
    cfg.serving.model_dir = Path(cfg.train.out_dir) / report.version  # pinned: Neo4j keeps what it serves
    pinned = retrain(graph, cfg)
    assert pinned.published and not written and pinned.writeback is None and pinned.writeback_error is None
    assert "pins" in pinned.writeback_skipped


def test_cli_retrain_exit_status_says_whether_it_published(loaded, neo4j_config, tmp_path, monkeypatch, capsys):
    from kg.neo4j_server import read_password
    from kgrec.cli import main

    for var, value in {"KGREC_WORKDIR": str(tmp_path / "cli"), "NEO4J_URI": neo4j_config.bolt_uri,
                       "NEO4J_PASSWORD": read_password(neo4j_config), "KGREC_TRAIN__EPOCHS": "15",
                       "KGREC_TRAIN__LR": "0.02", "KGREC_TRAIN__BATCH_SIZE": "512", "KGREC_TRAIN__KS": "10,20",
                       "KGREC_ENCODER__CACHE_DIR": str(loaded[1].encoder.cache_dir)}.items():
        monkeypatch.setenv(var, value)
    models = tmp_path / "cli" / "models"
    models.mkdir(parents=True)
    with model_dir_lock(models, pytest.fail, "retrain"):  # yesterday's run still going: its own status, nothing done
        assert main(["retrain", "--model", "lightgcn", "--no-writeback"]) == 6
    assert "another retrain is running" in capsys.readouterr().err and not list(models.iterdir())[1:]
    assert main(["retrain", "--model", "lightgcn", "--no-writeback"]) == 0
    first = json.loads(capsys.readouterr().out)
    assert first["published"] and first["writeback"] is None
    monkeypatch.setenv("KGREC_TRAIN__LR", "1e-6")
    monkeypatch.setenv("KGREC_TRAIN__EPOCHS", "1")
    assert main(["retrain", "--model", "rgcn", "--no-writeback"]) == 3
    out, err = capsys.readouterr()
    second = json.loads(out)
    assert not second["published"] and second["served_version"] == first["version"]
    assert "(the served model is lightgcn, this one rgcn: [train] model changed?)" in err
    monkeypatch.setenv("KGREC_TRAIN__LR", "1e30")  # the loss diverges: a broken model, as a NaN one is
    assert main(["retrain", "--model", "lightgcn", "--no-writeback"]) == 5
    assert "the new model is broken: loss diverged" in capsys.readouterr().err
    assert (models / "current").resolve().name == first["version"]
    import dataclasses

    import kgrec.retrain as job
    broken = job.RetrainReport(**{**second, "new_score": None, "decision": "kept the served model: the new "
                                  "version has no finite test ndcg@20"})
    monkeypatch.setattr(job, "retrain", lambda *a, **k: broken)  # a run whose model came out NaN
    assert main(["retrain", "--model", "lightgcn", "--no-writeback"]) == 5  # not 3: a run to look into
    assert json.loads(capsys.readouterr().out) == dataclasses.asdict(broken)
    from gnn.train import TrainingError

    def misconfigured(*args, **kwargs):
        raise TrainingError("gfcf needs a low-pass rank k >= 1")

    monkeypatch.setattr(job, "retrain", misconfigured)  # a configuration to fix, not a broken model: 2
    assert main(["retrain", "--model", "lightgcn", "--no-writeback"]) == 2
    assert "kgrec: error: gfcf needs" in capsys.readouterr().err
    unwritten = job.RetrainReport(**{**first, "writeback_error": "ServiceUnavailable: gone"})
    monkeypatch.setattr(job, "retrain", lambda *a, **k: unwritten)  # published, but Neo4j not updated
    assert main(["retrain", "--model", "lightgcn"]) == 4
    assert json.loads(capsys.readouterr().out)["writeback_error"] == "ServiceUnavailable: gone"


def test_cli_export_waits_for_a_running_ingest_and_leaves_no_snapshot(loaded, neo4j_config, tmp_path, monkeypatch,
                                                                       capsys):
    """`kgrec export` reads in several transactions: beside an ingest it could catch half a load."""
    from kg.neo4j_server import read_password
    from kgrec.cli import main

    graph, _ = loaded
    snaps = tmp_path / "cli" / "snapshots"
    for var, value in {"KGREC_WORKDIR": str(tmp_path / "cli"), "NEO4J_URI": neo4j_config.bolt_uri,
                       "NEO4J_PASSWORD": read_password(neo4j_config)}.items():
        monkeypatch.setenv(var, value)
    with graph_lock(graph):  # an ingest in progress
        assert main(["export", "--wait", "1"]) == 2
    assert "lock" in capsys.readouterr().err and not snaps.exists()
    assert main(["export"]) == 0
    assert Path(capsys.readouterr().out.strip()).parent == snaps


def test_a_retrain_killed_outright_leaves_a_whole_model_serving_and_no_lock(loaded, neo4j_config, tmp_path):
    """SIGKILL (no handler runs) a `kgrec retrain` process in mid-run, or just before it publishes:
    `current` still names a whole artifact, the OS has dropped the retrain lock, and the next
    retrain runs and publishes."""
    import os
    import signal
    import subprocess
    import sys
    import threading

    from kg.neo4j_server import read_password

    graph, cfg = loaded
    cfg.retrain.writeback = False
    first = retrain(graph, cfg)
    env = {**os.environ, "KGREC_WORKDIR": str(cfg.workdir), "NEO4J_URI": neo4j_config.bolt_uri,
           "NEO4J_PASSWORD": read_password(neo4j_config), "KGREC_TRAIN__OUT_DIR": str(cfg.train.out_dir),
           "KGREC_EXPORT__OUT_DIR": str(cfg.export.out_dir), "KGREC_TRAIN__EPOCHS": "100000",
           "KGREC_TRAIN__PATIENCE": "100000", "KGREC_TRAIN__KS": "10,20",
           "KGREC_ENCODER__CACHE_DIR": str(cfg.encoder.cache_dir)}
    proc = subprocess.Popen([sys.executable, "-m", "kgrec.cli", "retrain", "--model", "lightgcn", "--no-writeback"],
                            env=env, stderr=subprocess.PIPE, text=True)
    for line in proc.stderr:  # killed while it trains (100,000 epochs: it will not finish first)
        if line.startswith("exported"):
            break
    threading.Thread(target=proc.stderr.read, daemon=True).start()  # progress bars never fill the pipe
    checkpoints = Path(cfg.train.out_dir) / ".checkpoints"
    for _ in range(600):
        if checkpoints.is_dir() and any(checkpoints.rglob("last.pt")):
            break
        time.sleep(0.1)
    assert proc.poll() is None and any(checkpoints.rglob("last.pt"))  # training, mid-run
    proc.send_signal(signal.SIGKILL)
    proc.wait(60)
    current = (Path(cfg.train.out_dir) / "current").resolve()
    assert current.name == first.version and (current / "embeddings.npz").is_file()
    after = retrain(graph, cfg)  # not RetrainBusyError: the lock went with the process
    assert after.published and (Path(cfg.train.out_dir) / "current").resolve().name == after.version

    # killed at the worst moment: a new version is trained, gated, reported, and about to be published
    code = ("import os, signal\nimport gnn.artifact\n"
            "gnn.artifact.publish = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)\n"
            "from kgrec.cli import main\nmain(['retrain', '--model', 'lightgcn', '--no-writeback', '--force'])\n")
    killed = subprocess.run([sys.executable, "-c", code], env={**env, "KGREC_TRAIN__EPOCHS": "2"},
                            capture_output=True, text=True, timeout=600)
    assert killed.returncode == -signal.SIGKILL, killed.stderr[-2000:]
    current = (Path(cfg.train.out_dir) / "current").resolve()
    assert current.name == after.version and (current / "embeddings.npz").is_file()
    (unpublished,) = [json.loads(p.read_text()) for p in Path(cfg.train.out_dir).glob("*/retrain.json")
                      if json.loads(p.read_text())["version"] not in (first.version, after.version)]
    assert unpublished["published"] is False and unpublished["decision"] == "published: --force"
    last = retrain(graph, cfg)
    assert last.published and (Path(cfg.train.out_dir) / "current").resolve().name == last.version


def test_the_cron_script_loads_a_delta_file_then_retrains(loaded, neo4j_config, tmp_path):
    """scripts/retrain.sh: the day's events for known users and items load incrementally under their
    feed's watermark, then the retrain publishes a model trained on them."""
    import os
    import subprocess
    import sys

    from kg.ingest import get_watermark
    from kg.neo4j_server import read_password

    graph, cfg = loaded
    t0 = int(time.time()) - 3600  # the last hour's clicks
    (tmp_path / "clicks.csv").write_text(f"user,item,ts\nu1,i2,{t0}\nu3,i5,{t0 + 1}\nnobody,i1,{t0 + 2}\n")
    (tmp_path / "clicks.toml").write_text('[[files]]\nrole = "interactions"\nuser = "user"\nitem = "item"\n'
                                          'timestamp = "ts"\n')
    root = Path(__file__).resolve().parents[1]
    env = {**os.environ, "KGREC": str(Path(sys.executable).with_name("kgrec")), "KGREC_FEED": "clicks",
           "KGREC_WAIT": "5", "KGREC_WORKDIR": str(tmp_path / "work"), "NEO4J_URI": neo4j_config.bolt_uri,
           "NEO4J_PASSWORD": read_password(neo4j_config), "KGREC_TRAIN__EPOCHS": "5", "KGREC_TRAIN__KS": "10,20",
           "KGREC_ENCODER__CACHE_DIR": str(cfg.encoder.cache_dir)}
    # started elsewhere, with paths relative to where it is started (as from cron)
    proc = subprocess.run([str(root / "scripts" / "retrain.sh"), "tabular", "clicks.csv", "--mapping", "clicks.toml"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert get_watermark(graph, "clicks") == t0 + 1
    quarantine = (tmp_path / "work" / "quarantine" / "clicks.csv.quarantine.jsonl").read_text()
    assert "unknown user 'nobody'" in quarantine and "u1" not in quarantine
    current = tmp_path / "work" / "models" / "current"
    meta = json.loads((current / "meta.json").read_text())
    assert meta["model"] == "lightgcn" and Path(meta["snapshot"]).name.startswith("retrain-")
    assert json.loads(proc.stdout)["published"]  # the retrain's report alone; the ingest's went to stderr
    assert '"reconciliation"' in proc.stderr


def test_a_retrained_model_keeps_answering_free_text_search(loaded):
    """Retrain encodes the new snapshot for a model that reads no text when the served model answers
    free-text search, so the version it publishes still does."""
    graph, cfg = loaded
    cfg.retrain.writeback = False
    out = Path(cfg.train.out_dir)
    plain = retrain(graph, cfg)  # lightgcn, nothing served yet: no text to keep
    assert plain.published and not (out / plain.version / "item_text.npy").exists()
    cfg.train.model = "fused"  # reads text: encoded, and the artifact keeps the item vectors
    searching = retrain(graph, cfg, force=True)
    assert searching.published and (out / searching.version / "item_text.npy").is_file()
    cfg.train.model = "lightgcn"
    again = retrain(graph, cfg, force=True)
    assert again.published and (out / again.version / "item_text.npy").is_file()


def _later_events(seed: int, users: int = 100, per_user: int = 6) -> GraphRecords:
    """New events of known users, each with items of their own planted community."""
    rng = np.random.default_rng(seed)
    events = [{"user": f"u{u}", "item": f"i{int(i)}", "kind": "click", "weight": 1.0, "ts": 2_000_000_000 + seed,
               "split": ""}
              for u in range(users)
              for i in rng.choice(np.arange(u % SPEC.num_communities, SPEC.num_items, SPEC.num_communities),
                                  per_user, replace=False)]
    return GraphRecords(interactions=events)


def test_the_gate_compares_both_models_on_the_events_the_served_one_never_saw(loaded):
    """Once new events arrive, the served model and the new one are measured on the same ones: a
    model that learned nothing is kept out by its own figure there, not by another snapshot's."""
    graph, cfg = loaded
    cfg.retrain.writeback, cfg.retrain.min_gate_users = False, 20
    first = retrain(graph, cfg)
    assert first.published and first.compared_on == "own test splits" and first.head_to_head is None
    same = retrain(graph, cfg)  # nothing new in the graph: no event the served model never saw
    assert same.compared_on == "own test splits" and same.head_to_head is None

    ingest(graph, _later_events(1), cfg.ingest, progress=False)
    good = retrain(graph, cfg)
    duel = good.head_to_head
    assert good.compared_on.startswith("head to head") and duel["users"] >= 20 and duel["events"] >= duel["users"]
    assert good.published and duel["new"] >= 0.9 * duel["served"] and f"{duel['new']:.4f}" in good.decision
    assert json.loads((Path(cfg.train.out_dir) / good.version / "meta.json").read_text())["made_by"] == "kgrec retrain"

    ingest(graph, _later_events(2), cfg.ingest, progress=False)
    cfg.train.epochs, cfg.train.lr = 1, 1e-6  # learns nothing
    broken = retrain(graph, cfg)
    duel = broken.head_to_head
    assert broken.compared_on.startswith("head to head") and not broken.published
    assert duel["new"] < 0.9 * duel["served"] and (Path(cfg.train.out_dir) / "current").resolve().name == good.version

    ingest(graph, _later_events(3), cfg.ingest, progress=False)
    cfg.retrain.min_gate_users = 10 ** 6  # too few users for the head to head: its figures stay in the report
    few = retrain(graph, cfg)
    assert few.head_to_head is not None and few.compared_on.startswith("own test splits (the head to head had ")
    assert few.compared_on.endswith("below [retrain] min_gate_users 1000000)")


def test_force_never_publishes_a_model_without_a_finite_score(tmp_path):
    from kgrec.retrain import _gate, _test_score

    (tmp_path / "metrics.json").write_text('{"test": {"ndcg@20": NaN}}')  # json.dumps writes NaN so
    assert _test_score(tmp_path, "ndcg@20") is None
    published, why = _gate(None, tmp_path, 0.3, 0.1, "ndcg@20", force=True)
    assert not published and "no finite test ndcg@20" in why
    assert _gate(0.2, tmp_path, 0.3, 0.1, "ndcg@20", force=True) == (True, "published: --force")


def test_the_gate_publishes_at_exactly_the_floor_and_keeps_the_served_model_just_below_it(tmp_path):
    """floor = served × (1 − max_drop): 0.25 × (1 − 0.2) = 0.2 publishes, a hair under it does not;
    with no served model anything finite publishes, and a served model without a figure blocks."""
    from kgrec.retrain import _gate

    published, why = _gate(0.2, tmp_path, 0.25, 0.2, "ndcg@20", force=False)
    assert published and why == "published: 0.2000 >= 0.2000 (served 0.2500 less 20%)"
    published, why = _gate(0.2 - 1e-9, tmp_path, 0.25, 0.2, "ndcg@20", force=False)
    assert not published and why.startswith("kept the served model: ndcg@20 0.2000 < 0.2000")
    assert _gate(0.9, tmp_path, 0.25, 0.0, "ndcg@20", force=False)[0]  # max_drop 0: no worse than served
    assert _gate(0.09, tmp_path, 0.1, 0.1, "ndcg@20", force=False)[0]  # on the floor (0.09000000000000001)
    assert not _gate(0.2499, tmp_path, 0.25, 0.0, "ndcg@20", force=False)[0]
    assert _gate(0.0, None, None, 0.2, "ndcg@20", force=False) == (True, "published: no served model to compare with")
    published, why = _gate(0.9, tmp_path, None, 0.2, "ndcg@20", force=False)
    assert not published and "has no test ndcg@20 to compare with; --force publishes" in why


def test_the_gate_does_not_compare_test_figures_of_two_split_schemes(tmp_path):
    """A leave-one-out figure is not a ratio split's: the served model stays unless --force."""
    import json

    from kgrec.retrain import _gate, _split_mismatch

    served, new = tmp_path / "served", tmp_path / "new"
    for path, split in ((served, "ratio"), (new, "loo")):
        path.mkdir()
        (path / "meta.json").write_text(json.dumps({"split": split}))
    why = _split_mismatch(served, new)
    assert "'ratio' split" in why and "'loo' split" in why
    published, decision = _gate(0.5, served, 0.1, 0.1, "ndcg@20", force=False, incomparable=why)
    assert not published and decision.endswith("--force publishes the new version")
    assert _gate(0.5, served, 0.1, 0.1, "ndcg@20", force=True, incomparable=why)[0]
    (new / "meta.json").write_text(json.dumps({"split": "ratio"}))
    assert _split_mismatch(served, new) is None and _split_mismatch(None, new) is None
    (served / "meta.json").write_text("{}")  # an artifact from before the split was recorded
    assert _split_mismatch(served, new) is None
    # the same scheme holding out another share of each user's pairs: not comparable either
    settings = {"valid_ratio": 0.1, "test_ratio": 0.2, "seed": 1}
    (served / "meta.json").write_text(json.dumps({"split": "ratio", "split_settings": settings}))
    (new / "meta.json").write_text(json.dumps({"split": "ratio", "split_settings": {**settings, "test_ratio": 0.5}}))
    why = _split_mismatch(served, new)
    assert "test_ratio 0.2" in why and "test_ratio 0.5" in why and "valid_ratio" not in why
    (new / "meta.json").write_text(json.dumps({"split": "ratio", "split_settings": {**settings, "seed": 2}}))
    assert _split_mismatch(served, new) is None  # another draw, as new data makes


def test_prune_spares_a_version_a_server_holds_though_nothing_names_it(tmp_path):
    """`kgrec serve --model DIR` on an old version: neither `current` nor the config names it, but
    the server holds it (gnn.artifact.hold), so prune leaves it until the server lets go."""
    from gnn.artifact import hold
    from kgrec.config import Config

    cfg = Config(workdir=tmp_path)
    cfg.train.out_dir, cfg.retrain.keep = tmp_path / "models", 1
    versions = [cfg.train.out_dir / f"20260101-00000{n}-lightgcn" for n in range(3)]
    for v in versions:
        v.mkdir(parents=True)
        (v / "meta.json").write_text("{}")
        (v / "retrain.json").write_text('{"published": true}')
    (cfg.train.out_dir / "current").symlink_to(versions[-1].name)
    served = hold(versions[0])
    assert prune(cfg) == [str(versions[1])]
    assert versions[0].is_dir() and versions[2].is_dir()
    served.close()  # the server moved on, or stopped
    assert prune(cfg) == [str(versions[0])]



def test_prune_tells_published_rejected_and_unfinished_versions_by_their_decisions(tmp_path):
    """keep = 2. A run killed between its publish and the report saying so was published (its
    decision says so); one killed before the gate decided is a leftover, not the rejected version
    kept to look into, which is the newest one the gate kept the served model over."""
    import json

    from kgrec.config import Config

    cfg = Config(workdir=tmp_path)
    cfg.train.out_dir, cfg.retrain.keep = tmp_path / "models", 2
    # reports with the gate's outcome, and older ones (no "gate") read from their decision's wording
    runs = [("a", True, "published: 0.2 >= 0.1", None),
            ("v1", False, "kept the served model: ndcg@20 0.01 < 0.18", None),
            ("v2", False, "stopped before the quality gate decided", "undecided"),
            ("v3", False, "worded some other way", "publish"), ("v4", True, "published: 0.22 >= 0.19", "publish"),
            ("v0", False, "worded some other way", "reject")]
    versions = {}
    for n, (name, published, decision, gate) in enumerate(runs):
        v = versions[name] = cfg.train.out_dir / f"20260101-00000{n}-lightgcn"
        v.mkdir(parents=True)
        (v / "meta.json").write_text("{}")
        report = {"published": published, "decision": decision, **({"gate": gate} if gate else {})}
        (v / "retrain.json").write_text(json.dumps(report))
    (cfg.train.out_dir / "current").symlink_to(versions["v4"].name)
    shared = tmp_path / "snapshots" / "retrain-20260101-000000"  # `a`'s, and a pinned model's elsewhere
    shared.mkdir(parents=True)
    (versions["a"] / "meta.json").write_text(json.dumps({"snapshot": str(shared)}))
    cfg.serving.model_dir = tmp_path / "pinned"
    cfg.serving.model_dir.mkdir()
    (cfg.serving.model_dir / "meta.json").write_text(json.dumps({"snapshot": str(shared)}))
    assert sorted(prune(cfg)) == sorted(str(versions[n]) for n in ("a", "v1", "v2"))  # v0: the newest rejected
    assert all(versions[n].is_dir() for n in ("v0", "v3", "v4")) and shared.is_dir()

@pytest.mark.parametrize("keep", [1, 0])  # keep = 0 keeps every version, not what killed runs left
def test_prune_sweeps_what_killed_runs_left_once_a_day_old(tmp_path, keep):
    """Checkpoints of earlier nights' data (never resumed: each snapshot has its own), temporary
    version directories, versions of a retrain killed before its report, and snapshots this
    directory's retrains exported that no version was trained on go once a day old (not another
    model directory's, sharing the snapshot name); the newest
    checkpoint, the -latest snapshot and anything recent stay."""
    import os

    from kgrec.config import Config
    from kgrec.retrain import MADE_BY_RETRAIN

    cfg = Config(workdir=tmp_path)
    cfg.train.out_dir, cfg.export.out_dir, cfg.retrain.keep = tmp_path / "models", tmp_path / "snaps", keep
    old = time.time() - 2 * 86_400

    def make(path: Path, age: float | None = None) -> Path:
        path.mkdir(parents=True)
        (path / "meta.json").write_text("{}")
        if age is not None:
            os.utime(path, (age, age))
        return path

    ckpt = cfg.train.out_dir / ".checkpoints"
    ckpts = [make(ckpt / "lightgcn-a", old - 10), make(ckpt / "lightgcn-b", old), make(ckpt / "lightgcn-c")]
    only_rgcn = make(ckpt / "rgcn-z", old - 20)  # another model's newest: a stopped `kgrec train` goes on from it
    tmp_version = make(cfg.train.out_dir / ".tmp-20260101-000000-lightgcn", old)
    removing = make(cfg.train.out_dir / ".removing-20251231-000000-lightgcn-0a1b2c3d")  # a prune killed mid-delete
    stray_link, new_link = cfg.train.out_dir / ".current.tmp-4321", cfg.train.out_dir / ".current.tmp-4322"
    stray_link.symlink_to("20260101-000000-lightgcn")  # a publish killed between its link and the swap
    os.utime(stray_link, (old, old), follow_symlinks=False)
    new_link.symlink_to("20260101-000000-lightgcn")  # one publishing now
    snaps = [make(cfg.export.out_dir / f"retrain-2026010{n}-000000", old) for n in range(1, 6)]
    others = make(cfg.export.out_dir / "retrain-books-20260101-000000", old)  # another retrain's name
    version = make(cfg.train.out_dir / "20260101-000000-lightgcn")
    (version / "meta.json").write_text(json.dumps({"snapshot": str(snaps[0])}))
    # a retrain killed between its version's rename and its report: marked in meta.json from birth
    killed = make(cfg.train.out_dir / "20260102-000000-lightgcn")
    (killed / "meta.json").write_text(json.dumps({"snapshot": str(snaps[1]), **MADE_BY_RETRAIN}))
    os.utime(killed, (old, old))
    recent_kill = make(cfg.train.out_dir / "20260103-000000-lightgcn")  # may be a retrain still running
    (recent_kill / "meta.json").write_text(json.dumps(MADE_BY_RETRAIN))
    trained = make(cfg.train.out_dir / "20260101-000001-lightgcn", old)  # `kgrec train`'s: no mark, never swept
    cfg.serving.model_dir = make(tmp_path / "pinned")  # served from outside the model directory
    (cfg.serving.model_dir / "meta.json").write_text(json.dumps({"snapshot": str(snaps[4])}))
    (cfg.export.out_dir / "retrain-latest").symlink_to(snaps[3].name)
    os.utime(snaps[2], None)  # touched today: a retrain may be encoding it
    from kgrec.retrain import _record_export

    for snap in snaps[:5]:  # what this directory's retrains exported
        _record_export(cfg.train.out_dir, snap)
    theirs = make(cfg.export.out_dir / "retrain-20260106-000000", old)  # another model directory's export
    swept = prune(cfg)
    assert sorted(swept) == sorted(map(str, [ckpts[0], ckpts[1], tmp_version, removing, killed, snaps[1], stray_link]))
    assert new_link.is_symlink()
    assert all(p.is_dir() for p in [ckpts[2], only_rgcn, others, snaps[0], *snaps[2:], recent_kill, trained, theirs])
    os.utime(ckpts[2], (old, old))
    assert prune(cfg) == []  # the newest checkpoint stays however old: a rerun on its data resumes it
    ledger = (cfg.train.out_dir / ".retrain-snapshots").read_text().split()
    assert sorted(ledger) == sorted(str(p.resolve()) for p in [snaps[0], *snaps[2:]])  # the swept one is let go
    # a run that took up an old checkpoint holds it, but touches nothing until it saves: it was swept
    # from under the run, whose next save then failed
    from gnn.train import _claimed_checkpoint_dir

    held = make(ckpt / "lightgcn-held")
    (held / "owner").write_text("")
    os.utime(held, (old - 30, old - 30))
    with _claimed_checkpoint_dir(held) as claimed:
        assert claimed == held and prune(cfg) == [] and held.is_dir()
    assert prune(cfg) == [str(held)] and not held.exists()


def test_no_head_to_head_when_it_would_favour_one_side(tmp_path):
    """The new model early-stopped on its test split would be judged on the events it was picked by;
    a served artifact without seen_items.npz would be judged on its own validation and test events."""
    from kgrec.gate import head_to_head
    from kgrec.retrain import _picked_on_test

    new, served = tmp_path / "new", tmp_path / "served"
    new.mkdir()
    served.mkdir()
    evaluated = [{"epoch": 1, "test_ndcg@20": 0.1}, {"epoch": 2}, {"epoch": 3, "test_ndcg@20": 0.2}]
    (new / "metrics.json").write_text(json.dumps({"eval_split": "test", "history": evaluated}))
    assert head_to_head(served, new, tmp_path / "snapshot", "ndcg@20") is None
    assert _picked_on_test(new)
    (new / "metrics.json").write_text(json.dumps({"eval_split": "test", "history": evaluated[:2]}))  # one evaluation
    assert not _picked_on_test(new)
    (new / "metrics.json").write_text(json.dumps({"eval_split": "valid", "history": evaluated}))
    assert head_to_head(served, new, tmp_path / "snapshot", "ndcg@20") is None  # no seen_items.npz


def test_a_model_dir_naming_current_through_dots_follows_current(tmp_path):
    """`models/../models/current` is `current` before the first publish made it: not a pin of a
    missing model (resolving would not do: once made, `current` names a version)."""
    from kgrec.config import Config, ConfigError
    from kgrec.retrain import _check_served

    cfg = Config(workdir=tmp_path)
    cfg.train.out_dir = tmp_path / "models"
    cfg.serving.model_dir = tmp_path / "models" / ".." / "models" / "." / "current"
    _check_served(cfg)
    cfg.serving.model_dir = tmp_path / "models" / "v1"
    with pytest.raises(ConfigError, match="is not a model artifact"):
        _check_served(cfg)


def test_the_cron_script_leaves_a_config_files_workdir_alone(tmp_path):
    """scripts/retrain.sh exported KGREC_WORKDIR whatever KGREC_CONFIG's file said, and the
    environment wins over the file: cron trained, published and ran Neo4j in another state directory
    than the user's own `kgrec --config` commands. (KGREC here is a stand-in that prints the workdir
    kgrec's own load_config resolves.)"""
    import os
    import subprocess
    import sys

    root = Path(__file__).resolve().parents[1]
    shows = tmp_path / "shows-workdir"
    shows.write_text(f"#!/bin/sh\nexec {sys.executable} -c 'import sys; from kgrec.config import load_config; "
                     f"print(sys.argv[1], load_config().workdir)' \"$1\"\n")
    shows.chmod(0o755)
    own, quoted, bare = tmp_path / "own.toml", tmp_path / "quoted.toml", tmp_path / "bare.toml"
    own.write_text(f'workdir = "{tmp_path}/state"\n[train]\nepochs = 2\n')
    quoted.write_text(f'"workdir" = "{tmp_path}/state"\n')  # a quoted key, which a grep would miss
    bare.write_text("[train]\nepochs = 2\n")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KGREC", "NEO4J"))}
    env.update(KGREC=str(shows), NEO4J_URI="bolt://127.0.0.1:1", PYTHONPATH=str(root))  # no server started
    for extra, want in (({"KGREC_CONFIG": str(own)}, f"retrain {tmp_path}/state"),
                        ({"KGREC_CONFIG": str(quoted)}, f"retrain {tmp_path}/state"),
                        ({"KGREC_CONFIG": str(bare)}, f"retrain {root}/.kgrec"),
                        ({}, f"retrain {root}/.kgrec"),
                        ({"KGREC_WORKDIR": "/elsewhere", "KGREC_CONFIG": str(own)}, "retrain /elsewhere")):
        out = subprocess.run([str(root / "scripts" / "retrain.sh")], env={**env, **extra}, cwd=tmp_path,
                             capture_output=True, text=True, check=True)
        assert out.stdout.strip() == want and "neo4j" not in out.stderr, (extra, out)  # NEO4J_URI's server
    # a blank NEO4J_URI is unset, as kgrec reads it: kgrec's own server is started
    out = subprocess.run([str(root / "scripts" / "retrain.sh")], env={**env, "NEO4J_URI": " \t"}, cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    assert f"neo4j {root}/.kgrec" in out.stderr and out.stdout.strip() == f"retrain {root}/.kgrec"


def test_a_report_that_cannot_be_saved_leaves_no_temporary_file(tmp_path):
    from kgrec.retrain import _replace_text

    target = tmp_path / "retrain.json"
    target.mkdir()  # os.replace fails after the temporary file is written, as on a disk full at the rename
    (target / "keep").write_text("")
    with pytest.raises(OSError):
        _replace_text(target, "{}")
    assert [p.name for p in tmp_path.iterdir()] == ["retrain.json"]
