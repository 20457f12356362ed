"""Write the serving model back to Neo4j for Cypher users: embeddings, vector index, top-k lists.

After this, Neo4j Browser can run ``MATCH (u:User {id:'u1'})-[r:RECOMMENDED]->(i) RETURN u, r, i``
or vector queries against the ``item_embedding`` index.
"""
from __future__ import annotations

import logging

from kg.connection import Graph, batches

from .recommender import Recommender

logger = logging.getLogger(__name__)


def write_back(graph: Graph, rec: Recommender, k: int = 10, batch_size: int = 2000,
               users: list[str] | None = None, index_timeout_s: int = 600) -> dict[str, int]:
    """Store embeddings on nodes, (re)build the vector index, and write ``RECOMMENDED`` lists.

    Each embedding is stored with the model version (``embedding_model``); embeddings of another
    model on nodes this one does not know are removed, so the index holds one model's vectors.

    Args:
        graph: connected graph.
        rec: the loaded model.
        k: length of each user's list.
        batch_size: rows per transaction.
        users: users to write lists for (default: all users of the model).
        index_timeout_s: how long to wait for the vector index to come online (Neo4j fills it in
            the background; a vector query before then fails).

    Returns:
        Counts of items, users and recommendation relationships written.
    """
    dim = int(rec.item_emb.shape[1])
    for rows in batches(({"id": i, "embedding": v} for i, v in zip(rec.item_ids, rec.item_emb.tolist())), batch_size):
        graph.write("writeback/set_item_embeddings", rows=rows, model=rec.version)
    for rows in batches(({"id": u, "embedding": v} for u, v in zip(rec.user_ids, rec.user_emb.tolist())), batch_size):
        graph.write("writeback/set_user_embeddings", rows=rows, model=rec.version)
    graph.write("writeback/clear_stale_embeddings", model=rec.version)  # nodes this model does not know
    # An index of another dimension is replaced only now: while the vectors were written it kept
    # answering (Neo4j just leaves vectors of the wrong size out), so vector queries fail only
    # while the new index fills, which the await below waits out.
    info = graph.query("writeback/vector_index_info")
    if info and info[0]["dimensions"] != dim:
        graph.write("writeback/drop_item_vector_index")
    graph.write("writeback/create_item_vector_index",
                options={"indexConfig": {"vector.dimensions": dim, "vector.similarity_function": "cosine"}})
    graph.query("writeback/await_item_vector_index", timeout_s=index_timeout_s)  # populated before we return
    users = rec.user_ids if users is None else users
    written = 0
    for chunk in batches(users, max(1, batch_size // max(1, k))):
        rows = [{"user": u, "item": r.item_id, "rank": rank + 1, "score": r.score}
                for u, recs in zip(chunk, rec.recommend_many(chunk, k)) for rank, r in enumerate(recs)]
        # clear and set in one transaction, so a reader never finds a user with no list
        graph.write_all([("writeback/clear_recommendations", {"users": chunk}),
                         ("writeback/set_recommendations", {"rows": rows, "model": rec.version})])
        written += len(rows)
    return {"items": len(rec.item_ids), "users": len(rec.user_ids), "recommendations": written}
