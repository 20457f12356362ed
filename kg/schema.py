"""Graph schema: constraints and indexes from ``cypher/schema/``, applied idempotently.

Nodes: ``User``, ``Item``, ``Query``, ``Entity`` (attribute or KG entity; its kind in ``type``).
Relationships (types are a fixed vocabulary; names from data are stored as properties):

- ``(:User)-[:INTERACTED {kind, weight, ts, split}]->(:Item)``
- ``(:User)-[:SEARCHED {ts}]->(:Query)``, ``(:Query)-[:RELEVANT {relevance}]->(:Item)``
- ``(:Item)-[:HAS_ATTRIBUTE {relation}]->(:Entity)``, ``(:User)-[:HAS_ATTRIBUTE {relation}]->(:Entity)``
- ``(:Entity)-[:RELATED {relation}]->(:Entity)`` (KG triples); item-KG links are
  ``HAS_ATTRIBUTE {relation: "same_as"}`` (``SAME_AS`` is reserved, not written)
- ``(:User)-[:FRIEND]->(:User)``
"""
from __future__ import annotations

import logging

import neo4j.exceptions as neo4j_exc

from .connection import Graph
from .errors import SchemaConflictError

logger = logging.getLogger(__name__)
ITEM_TEXT_ANALYZER = "standard-folding"  # the item_text full-text index's, as cypher/schema/constraints makes it
OLD_ITEM_TEXT_ANALYZER = "standard-no-stop-words"  # Neo4j's default, which kgrec used before (no accent folding)


def apply_schema(graph: Graph) -> None:
    """Create every constraint and index (no-op when present); an ``item_text`` full-text index an
    older kgrec made with Neo4j's default analyzer (no accent folding) is made again, and waited for.

    An index of another name where kgrec keeps none on purpose (``INTERACTED.kind``/``ts``,
    ``RELATED.relation``, ``Item.title``, ``Entity.name``) is left alone, with a warning naming it.

    Raises:
        SchemaConflictError: the database has a plain index where kgrec needs a uniqueness
            constraint (``IF NOT EXISTS`` does not cover that): it names the index to drop.
    """
    found = graph.query("schema/item_text_analyzer")
    # made by an older kgrec, without accent folding: IF NOT EXISTS would keep it (another analyzer,
    # one a user chose for their language, stays)
    remake = bool(found) and found[0]["analyzer"] == OLD_ITEM_TEXT_ANALYZER
    if remake:
        graph.write("schema/drop_item_text")
    try:
        graph.run_script("schema/constraints")
    except neo4j_exc.ClientError as e:
        if e.code != "Neo.ClientError.Schema.IndexAlreadyExists":
            raise
        named = [f"DROP INDEX `{row['name']}` (on {row['blocks']})"
                 for row in graph.query("schema/indexes_in_the_way") if row["blocks"]]
        raise SchemaConflictError(f"{e.message} kgrec needs a uniqueness constraint there (MERGE on ids): "
                                  f"{'; '.join(named) or 'drop that index (SHOW RANGE INDEXES names it)'}, then run "
                                  f"again; the constraint's own index serves the same lookups") from e
    for row in graph.query("schema/indexes_in_the_way"):  # kgrec's own of these names are dropped above
        if row["slows"]:
            logger.warning("the index %r on %s works against kgrec: %s (DROP INDEX `%s`; docs/schema.md)",
                           row["name"], row["target"], row["slows"], row["name"])
    if remake:  # every index, not item_text by name: a concurrent command's drop may have removed it
        graph.write("schema/await_indexes", timeout_s=600)


def wipe(graph: Graph, batch: int = 20000, keep_locks: bool = False) -> int:
    """Delete every relationship, then every node, ``batch`` at a time. Returns the number of nodes deleted.

    ``keep_locks`` leaves the ``:KgrecLock`` nodes (a caller that holds the ingest lock while it wipes).

    Relationships go first so that no transaction holds more than ``batch`` deletions: with a 1 GB
    heap, detaching 20,000 nodes of the 1M-interaction graph at once exceeded the server's
    transaction memory limit (70 % of the heap).
    """
    while graph.write("schema/wipe_relationships_batch", limit=batch).relationships_deleted:
        pass
    total = 0
    while True:
        counters = graph.write("schema/wipe_batch", limit=batch, keep_locks=keep_locks)
        total += counters.nodes_deleted
        if counters.nodes_deleted == 0:
            return total
