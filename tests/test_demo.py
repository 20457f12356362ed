"""The main job, `kgrec demo`, end to end on the test server with its default arguments."""
from __future__ import annotations

import json

import pytest

pytestmark = pytest.mark.neo4j


def test_demo_trains_the_fused_model_and_finds_the_planted_communities(graph, config, capsys):
    from kgrec.cli import build_parser, cmd_demo

    args = build_parser().parse_args(["demo"])
    assert args.model == "kgfused"
    cmd_demo(args, config)
    out = capsys.readouterr().out
    assert "trained kgfused" in out
    assert out.count("5/5 from their community") == 2  # u0 and u1 get only their own community's items
    metrics = json.loads((config.train.out_dir / "current" / "metrics.json").read_text())["test"]
    assert metrics["recall@20"] > 5 * 20 / args.items  # five times a random ranking's Recall@20 (it is 0.43)
    edges = graph.driver.execute_query("MATCH (:User)-[r:RECOMMENDED]->(:Item) RETURN count(r) AS n",
                                       database_=graph.database).records[0]["n"]
    assert edges == 10 * args.users  # the top-10 of every user, written back for Cypher users
