"""Graph schema: constraints and indexes from ``cypher/schema/``, applied idempotently.

Nodes: ``User``, ``Item``, ``Query``, ``Entity`` (attribute or KG entity; its kind in ``type``).
Relationships (types are a fixed vocabulary; names from data are stored as properties):

- ``(:User)-[:INTERACTED {kind, weight, ts, split}]->(:Item)``
- ``(:User)-[:SEARCHED {ts}]->(:Query)``, ``(:Query)-[:RELEVANT {relevance}]->(:Item)``
- ``(:Item)-[:HAS_ATTRIBUTE {relation}]->(:Entity)``
- ``(:Entity)-[:RELATED {relation}]->(:Entity)`` (KG triples), ``(:Item)-[:SAME_AS]->(:Entity)``
- ``(:User)-[:FRIEND]->(:User)``
"""
from __future__ import annotations

from .connection import Graph


def apply_schema(graph: Graph) -> None:
    """Create every constraint and index (no-op when present)."""
    graph.run_script("schema/constraints")


def wipe(graph: Graph, batch: int = 20000) -> int:
    """Delete every node and relationship, in batches. Returns the number of nodes deleted."""
    total = 0
    while True:
        counters = graph.write("schema/wipe_batch", limit=batch)
        total += counters.nodes_deleted
        if counters.nodes_deleted == 0:
            return total
