"""The main job, `kgrec demo`, end to end on the test server with its default arguments."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.neo4j


def test_demo_trains_the_fused_model_and_finds_the_planted_communities(graph, config, capsys):
    from kgrec.cli import build_parser, cmd_demo

    args = build_parser().parse_args(["demo"])
    cmd_demo(args, config)
    out = capsys.readouterr().out
    assert "trained kgfused" in out and (config.train.model, config.train.epochs) == ("kgfused", 40)
    assert out.count("5/5 from their community") == 2  # u0 and u1 get only their own community's items
    # u1 searches community 0's words: the text decides the topic (u1's own community is 1)
    assert "search 'trail marathon' for u1" in out and out.count("  community 0  ") == 3
    metrics = json.loads((config.train.out_dir / "current" / "metrics.json").read_text())["test"]
    assert metrics["recall@20"] > 5 * 20 / args.items  # five times a random ranking's Recall@20 (it is 0.43)
    edges = graph.driver.execute_query("MATCH (:User)-[r:RECOMMENDED]->(:Item) RETURN count(r) AS n",
                                       database_=graph.database).records[0]["n"]
    assert edges == 10 * args.users  # the top-10 of every user, written back for Cypher users


def test_demo_training_settings_come_from_flags_then_config_then_the_demo(monkeypatch):
    """`kgrec demo`'s small-graph settings replace only what neither a flag nor the config sets."""
    from kgrec import cli
    from kgrec.config import load_config

    class Connected(Exception):
        """Raised where the demo would connect: the settings are final by then."""

    def connect(cfg, start=False):
        raise Connected

    monkeypatch.setattr(cli, "_graph", connect)

    def settings(argv: list[str], env: dict[str, str]) -> tuple:
        cfg = load_config(env=env)
        with pytest.raises(Connected):
            cli.cmd_demo(cli.build_parser().parse_args(["demo", *argv]), cfg)
        return cfg.train.model, cfg.train.epochs, cfg.train.lr, cfg.train.batch_size

    assert settings([], {}) == ("kgfused", 40, 0.01, 1024)
    assert settings([], {"KGREC_TRAIN__EPOCHS": "5", "KGREC_TRAIN__MODEL": "fused"}) == ("fused", 5, 0.01, 1024)
    assert settings(["--epochs", "7"], {"KGREC_TRAIN__EPOCHS": "5"}) == ("kgfused", 7, 0.01, 1024)


def test_demo_refuses_a_database_holding_other_data_and_reset_clears_it(graph, config):
    from kg.synthetic import SyntheticSpec
    from kgrec.config import ConfigError
    from kgrec.pipeline import claim_demo_graph

    def nodes() -> int:
        return graph.driver.execute_query("MATCH (n) WHERE NOT n:KgrecMeta RETURN count(n) AS n",  # the write count aside
                                          database_=graph.database).records[0]["n"]

    spec = SyntheticSpec(num_users=30, num_items=20, seed=1)
    graph.driver.execute_query("CREATE (:KgrecLock {name: 'left-by-a-killed-ingest'})", database_=graph.database)
    assert claim_demo_graph(graph, spec) == 0  # no data, only kgrec's bookkeeping: claimed
    graph.driver.execute_query("MATCH (n:KgrecLock) DELETE n", database_=graph.database)
    assert claim_demo_graph(graph, spec) == 0  # the same dataset again: fine (ingest MERGEs)
    graph.driver.execute_query("CREATE (:User {id: 'u0'}), (:Item {id: 'i0'})", database_=graph.database)
    graph.write("ingest/count_write")  # the demo's ingest counts as a write
    graph.write("demo/loaded")  # what the demo's ingest left
    assert claim_demo_graph(graph, spec) == 0  # unchanged since: the demo runs again
    from kg.ingest import forget_user

    assert forget_user(graph, "u0")  # then a node made outside kgrec evens the count out
    graph.driver.execute_query("CREATE (:User {id: 'bob'})", database_=graph.database)
    with pytest.raises(ConfigError, match=r"has had 1 kgrec write\(s\) since this demo's load.*bring removed"):
        claim_demo_graph(graph, spec)  # it would have brought u0 back
    graph.driver.execute_query("MATCH (b:User {id: 'bob'}) SET b.id = 'u0'", database_=graph.database)
    graph.write("demo/loaded")  # as if the demo had loaded this
    graph.driver.execute_query("CREATE (:Item {id: 'x1'})", database_=graph.database)  # `kgrec ingest` since
    with pytest.raises(ConfigError, match="holds 3 nodes where this demo's load left 2.*--reset"):
        claim_demo_graph(graph, spec)
    graph.driver.execute_query("MATCH (n) WHERE n.id IN ['x1', 'u0'] DELETE n", database_=graph.database)
    with pytest.raises(ConfigError, match="holds 1 nodes where this demo's load left 2"):  # a forget-user since
        claim_demo_graph(graph, spec)
    graph.driver.execute_query("MATCH (n:Item {id: 'i0'}) DELETE n", database_=graph.database)
    graph.driver.execute_query("CREATE (:User {id: 'alice'})", database_=graph.database)
    with pytest.raises(ConfigError, match="another demo dataset"):
        claim_demo_graph(graph, SyntheticSpec(num_users=30, num_items=20, seed=2))
    graph.driver.execute_query("MATCH (m:KgrecDemo) DELETE m", database_=graph.database)
    with pytest.raises(ConfigError, match="no kgrec demo wrote.*--reset"):
        claim_demo_graph(graph, spec)
    assert nodes() == 1  # refused without writing anything
    graph.driver.execute_query("MATCH (n) DELETE n CREATE (:Person {name: 'not kgrec data'})", database_=graph.database)
    with pytest.raises(ConfigError, match="no kgrec demo wrote"):  # whatever its labels
        claim_demo_graph(graph, spec)
    from kg.lock import LockedError, graph_lock

    with graph_lock(graph):  # an ingest running: --reset would delete what it writes, and its lock
        with pytest.raises(LockedError):
            claim_demo_graph(graph, spec, reset=True)
    assert claim_demo_graph(graph, spec, reset=True) == 2  # the other data went, and the write count
    assert nodes() == 1  # only the new marker


def test_the_demo_names_its_config_in_the_stop_command_it_prints():
    """The demo run with --config printed `kgrec neo4j stop`, which looks for a server in the default
    home and says none runs."""
    import argparse

    from kgrec.cli import _stop_command

    import shlex
    from pathlib import Path

    here = f"cd {shlex.quote(str(Path.cwd()))} && "  # where its relative paths point (.venv/bin/kgrec, .kgrec)
    assert _stop_command(argparse.Namespace(config="my dir/kgrec.toml")) == \
        here + "kgrec neo4j stop --config 'my dir/kgrec.toml'"
    assert _stop_command(argparse.Namespace()) == here + "kgrec neo4j stop"
