"""The offline bulk path (neo4j-admin database import) against the managed test server."""
from __future__ import annotations

import pytest

from kg.bulk_import import bulk_import
from kg.connection import connect
from kg.ingest import graph_counts, ingest
from kg.synthetic import SyntheticSpec, generate
from kgrec.config import IngestConfig

pytestmark = pytest.mark.neo4j


def test_bulk_import_then_merge_changes_nothing(neo4j_config):
    if not neo4j_config.managed:
        pytest.skip("bulk import rebuilds the managed server's database offline")
    records = generate(SyntheticSpec(num_users=120, num_items=60, num_queries=10))
    report = bulk_import(records, neo4j_config)
    assert report["import_seconds"] > 0
    with connect(neo4j_config) as g:
        counts = graph_counts(g)
        c = records.counts()
        assert counts["users"] == c["users"] and counts["items"] == c["items"]
        assert counts["relationships"] == (c["interactions"] + c["user_queries"] + c["query_items"]
                                           + c["item_entities"])
        again = ingest(g, records, IngestConfig(), progress=False)
        assert again["nodes_created"] == 0 and again["relationships_created"] == 0
