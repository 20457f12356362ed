"""Shared fixtures. Tests talk to a real Neo4j server, never a mock.

The suite never uses the ``NEO4J_*`` (or ``KGREC_NEO4J__*``) variables a user exported for their own graph: they are
removed from the environment before any test runs, so no test (nor any ``kgrec`` it starts) can
wipe that database; nor other ``KGREC_*`` settings (``KGREC_CONFIG``, ``KGREC_TRAIN__EPOCHS``),
which tests set themselves where they need one. With ``KGREC_TEST_NEO4J_URI`` (and ``KGREC_TEST_NEO4J_USER``,
``_PASSWORD``, ``_DATABASE``) set, tests use that server, and wipe its database. Otherwise the
suite starts its own managed Neo4j in ``.kgrec/neo4j-test-<port>`` on ``KGREC_TEST_BOLT_PORT`` (default 7688) and
``KGREC_TEST_HTTP_PORT`` (default 7475), so the demo graph on 7687 is left alone, with a heap and
page cache of ``KGREC_TEST_HEAP`` and ``KGREC_TEST_PAGECACHE`` (default 1g each; the heap is
touched up front, so a small CI box may want less). The test server is
left running for the next run; ``make neo4j-test-stop`` (and .ci/run) stop it.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from kgrec.config import Config, Neo4jConfig, load_config

ROOT = Path(__file__).resolve().parents[1]
DATASETS = ROOT.parent / "shared" / "datasets"
TEST_SERVER = {k.removeprefix("KGREC_TEST_"): v for k, v in os.environ.items() if k.startswith("KGREC_TEST_NEO4J_")}
for _name in [k for k in os.environ if k.startswith(("NEO4J_", "KGREC_")) and not k.startswith("KGREC_TEST_")]:
    del os.environ[_name]  # the user's own graph (never the test server) and settings (KGREC_CONFIG, KGREC_TRAIN__*)


def test_neo4j_config() -> Neo4jConfig:
    """The Neo4j config the test suite uses (see module docstring)."""
    cfg = load_config(env=TEST_SERVER).neo4j
    if cfg.managed:
        bolt = int(os.environ.get("KGREC_TEST_BOLT_PORT", "7688"))
        http = int(os.environ.get("KGREC_TEST_HTTP_PORT", "7475"))
        cfg = Neo4jConfig(home=ROOT / ".kgrec" / f"neo4j-test-{bolt}", bolt_port=bolt, http_port=http,
                          heap=os.environ.get("KGREC_TEST_HEAP", "1g"),
                          pagecache=os.environ.get("KGREC_TEST_PAGECACHE", "1g"),
                          start_timeout_s=300)  # bulk-import tests restart it
    return cfg


test_neo4j_config.__test__ = False  # not a test


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that reaches the server (through the ``neo4j_config`` fixture) ``neo4j``, so
    ``-m "not neo4j"`` runs without one."""
    for item in items:
        if "neo4j_config" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.neo4j)


@pytest.fixture(scope="session")
def neo4j_config() -> Neo4jConfig:
    from kg.neo4j_server import ManagedNeo4j

    cfg = test_neo4j_config()
    if cfg.managed:
        ManagedNeo4j(cfg).start()
    return cfg


@pytest.fixture(scope="module")
def graph_session(neo4j_config):
    """One driver per test module (a module that rebuilds the database gets no stale bookmarks)."""
    from kg.connection import connect

    with connect(neo4j_config) as g:
        yield g


@pytest.fixture
def graph(graph_session):
    """A connected :class:`kg.connection.Graph` on an empty database with the kgrec schema."""
    from kg.schema import apply_schema, wipe

    wipe(graph_session)
    apply_schema(graph_session)
    return graph_session


@pytest.fixture
def config(tmp_path, neo4j_config) -> Config:
    """A full config whose working files live in ``tmp_path`` and whose Neo4j is the test server."""
    cfg = Config(workdir=tmp_path, neo4j=neo4j_config)
    cfg.ingest.quarantine_dir = tmp_path / "quarantine"
    cfg.export.out_dir = tmp_path / "snapshots"
    cfg.encoder.cache_dir = ROOT / ".kgrec" / "cache" / "text-test"
    cfg.train.out_dir = tmp_path / "models"
    cfg.serving.model_dir = tmp_path / "models" / "current"
    return cfg


def dataset_dir(name: str) -> Path:
    """Path of a shared dataset, or skip the test with a reason when it is absent."""
    path = DATASETS / name
    if not path.is_dir():
        pytest.skip(f"../shared/datasets/{name} is absent (licensed data stays out of the repo)")
    return path
