"""Write the serving model back to Neo4j for Cypher users: embeddings, vector index, top-k lists.

After this, Neo4j Browser can run ``MATCH (u:User {id:'u1'})-[r:RECOMMENDED]->(i) RETURN u, r, i``
or vector queries against the ``item_embedding`` index.
"""
from __future__ import annotations

import logging
from contextlib import closing

import torch

from kg.connection import Graph, batches
from kg.errors import SchemaConflictError
from kg.lock import WRITEBACK_LOCK, Lease, graph_lock

from .recommender import Recommender, UnknownUserError

logger = logging.getLogger(__name__)

STALE_BATCH = 10_000  # nodes whose leftovers of another model are cleared per transaction (lists: / k)


def write_back(graph: Graph, rec: Recommender, k: int = 10, batch_size: int = 2000,
               users: list[str] | None = None, index_timeout_s: int = 600,
               lock_wait_s: float = 600.0) -> dict[str, int]:
    """Store embeddings on nodes, (re)build the vector index, and write ``RECOMMENDED`` lists.

    Each embedding and list is stored with the model version (``embedding_model``, ``r.model``);
    once this model's are written, embeddings and lists of another model on nodes this one does not
    know (or, for lists, on users left out of ``users``) are removed, so the index and the lists are
    one model's. While it runs, the graph holds both models' vectors: the Browser statements in
    ``cypher/serving`` only combine vectors of one model (``embedding_model``).

    Args:
        graph: connected graph.
        rec: the loaded model.
        k: length of each user's list.
        batch_size: rows per transaction.
        users: users to write lists for (default: all users of the model).
        index_timeout_s: how long to wait for the vector index to come online (Neo4j fills it in
            the background; a vector query before then fails).
        lock_wait_s: how long to wait while another write-back runs (:data:`WRITEBACK_LOCK`): two at
            once would each remove the other's embeddings and lists.

    Returns:
        Counts of items and users whose embeddings were written, and of recommendation
        relationships written (an item deleted since the model's snapshot is left out of the lists,
        the next one taking its place; a user deleted since gets none, and is not counted), and
        ``skipped_embeddings``: rows not written because they are not finite or all zero (Neo4j's
        vector index takes neither; a graph filter gives an item without training events zeros).
        Those nodes lose any vector they held (an older model's, or this one's from an earlier write-back).

    Raises:
        kg.lock.LockedError: another write-back held the graph for longer than ``lock_wait_s``.
        kg.errors.SchemaConflictError: a vector index of another name covers ``:Item(embedding)``, or
            ``item_embedding`` covers another label or property.
        serving.recommender.UnknownUserError: ``users`` names a user the model does not know; nothing
            was written.
    """
    with graph_lock(graph, WRITEBACK_LOCK, lock_wait_s) as lease:
        return _write_back(graph, rec, k, batch_size, users, index_timeout_s, lease)


def _write_back(graph: Graph, rec: Recommender, k: int, batch_size: int, users: list[str] | None,
                index_timeout_s: int, lease: Lease) -> dict[str, int]:
    dim = int(rec.item_emb.shape[1])
    users = list(dict.fromkeys(rec.user_ids if users is None else users))  # a repeated id: one list
    unknown = [u for u in users if u not in rec.user_index]
    if unknown:  # before anything is written: half a write-back would leave two models' lists
        raise UnknownUserError(f"the model does not know {len(unknown)} of the users to write lists for "
                               f"({', '.join(map(repr, unknown[:5]))}{', ...' if len(unknown) > 5 else ''}); "
                               f"nothing was written")
    info = _index_info(graph)  # before anything is written: a conflict stops the write-back untouched
    counts = {"items": 0, "users": 0, "recommendations": 0, "skipped_embeddings": 0}
    for kind, ids, emb in (("item", rec.item_ids, rec.item_emb), ("user", rec.user_ids, rec.user_emb)):
        usable = (torch.isfinite(emb).all(1) & (emb.abs().sum(1) > 0)).tolist()
        counts["skipped_embeddings"] += usable.count(False)
        vectors = (v for start in range(0, len(ids), batch_size) for v in emb[start:start + batch_size].tolist())
        for rows in batches(({"id": n, "embedding": v} for n, v, ok in zip(ids, vectors, usable) if ok),
                            batch_size):  # the lease is checked before every attempt, a driver retry's too
            counts[f"{kind}s"] += graph.write_counted(f"writeback/set_{kind}_embeddings", before_=lease.check,
                                                      rows=rows, model=rec.version)[1]
        for skipped in batches((n for n, ok in zip(ids, usable) if not ok), batch_size):
            graph.write(f"writeback/clear_{kind}_embeddings", before_=lease.check, ids=skipped)
    if counts["skipped_embeddings"]:
        logger.warning("%d embeddings of %s are not finite or all zero: not written (those nodes have no vector%s)",
                       counts["skipped_embeddings"], rec.version,
                       "; a graph filter gives items without training events none" if rec.scorer is not None else "")
    _clear_stale(graph, "embeddings", lease, rec.version, STALE_BATCH)  # on nodes it does not know
    # An index of another dimension is replaced only now: while the vectors were written it kept
    # indexing the old-size ones (Neo4j leaves vectors of another size out); a query with a new
    # vector fails against it, and any query fails while the new index fills (awaited below).
    if info and (info[0]["dimensions"] != dim or info[0]["similarity"] != "COSINE" or info[0]["state"] == "FAILED"
                 or info[0]["quantized"] is True):  # another size, hand-made, broken, or compressed
        graph.write("writeback/drop_item_vector_index", before_=lease.check)
    # full-precision vectors: Neo4j (5.23 on, which kgrec needs) quantizes them by default, and the
    # Browser's neighbours then differ from /similar's
    graph.write("writeback/create_item_vector_index", before_=lease.check,
                options={"indexConfig": {"vector.dimensions": dim, "vector.similarity_function": "cosine",
                                         "vector.quantization.enabled": False}})
    graph.query("writeback/await_item_vector_index", timeout_s=index_timeout_s)  # populated before we return
    gone = {i for ids in batches(rec.item_ids, STALE_BATCH)
            for i in graph.query("writeback/missing_items", ids=ids)[0]["missing"]}
    for chunk in batches(users, max(1, batch_size // max(1, k))):
        lease.check()
        rows = [{"user": u, "item": r.item_id, "rank": rank + 1, "score": r.score}
                for u, recs in zip(chunk, _lists(graph, rec, chunk, k, gone)) for rank, r in enumerate(recs)]
        # clear and set in one transaction, so a reader never finds a user with no list
        _, made = graph.write_all([("writeback/clear_recommendations", {"users": chunk}),
                                   ("writeback/set_recommendations", {"rows": rows, "model": rec.version})],
                                  before=lease.check)
        counts["recommendations"] += made.relationships_created
    _clear_stale(graph, "recommendations", lease, rec.version, max(1, STALE_BATCH // max(1, k)))
    return counts


def _clear_stale(graph: Graph, what: str, lease: Lease, model: str, batch_size: int) -> None:
    """Remove another model's leftover ``what`` (``embeddings`` or ``recommendations``): one streamed
    scan finds the nodes that hold some, then they are cleared ``batch_size`` nodes a transaction,
    by element id, the lease checked before every attempt. (A clean-up that scanned again for each
    batch went through the whole graph once per batch.)"""
    found = "stale_embedding_nodes" if what == "embeddings" else "stale_recommendation_users"
    with closing(graph.stream(f"writeback/{found}", model=model)) as rows:  # closed at once should a write fail
        for ids in batches((row["id"] for row in rows), batch_size):
            graph.write(f"writeback/clear_stale_{what}", before_=lease.check, ids=ids, model=model)


def _index_info(graph: Graph) -> list[dict]:
    """``item_embedding``'s settings (a list of one, or empty).

    Raises:
        SchemaConflictError: another vector index covers ``:Item(embedding)``, so Neo4j would not
            create ``item_embedding`` beside it (and kgrec would wait for an index never made), or
            ``item_embedding`` is an index over something else (CREATE ... IF NOT EXISTS keeps it).
    """
    info = graph.query("writeback/vector_index_info")
    others = [r["name"] for r in info if r["name"] != "item_embedding"]
    if others:
        raise SchemaConflictError(f"the vector index {others[0]!r} already covers :Item(embedding), where kgrec "
                                  f"writes its embeddings and keeps its own index 'item_embedding': drop it "
                                  f"(DROP INDEX {others[0]}) and write back again; nothing was written")
    if info and (info[0]["entity"], info[0]["labels"], info[0]["properties"]) != ("NODE", ["Item"], ["embedding"]):
        labels, properties = "|".join(info[0]["labels"]), ", ".join(info[0]["properties"])
        target = f"(:{labels})" if info[0]["entity"] == "NODE" else f"()-[:{labels}]-()"
        raise SchemaConflictError(f"the vector index 'item_embedding', kgrec's name for its index over "
                                  f":Item(embedding), covers {target} on {properties}: drop it (DROP INDEX "
                                  f"item_embedding) and write back again; nothing was written")
    return info


def _lists(graph: Graph, rec: Recommender, users: list[str], k: int, gone: set[str]) -> list[list]:
    """Each user's top ``k``, without the items the graph says they have interacted with since the
    model's snapshot (a list in Browser never shows an item its user already has), nor the items
    ``gone`` from the graph since (a list is never short of one, with a gap in its ranks)."""
    since = {r["user"]: set(r["items"]) for r in graph.query("writeback/interacted_items", users=users)}
    since = {u: items - set(rec.seen_items(u)) for u, items in since.items() if u in rec.user_index}
    extra = max((len(items) for items in since.values()), default=0)
    return [[r for r in recs if r.item_id not in since.get(u, ())][:k]
            for u, recs in zip(users, rec.recommend_many(users, k + extra, exclude=gone))]
