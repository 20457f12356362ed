// Vector recall: the items nearest to a given item in the native vector index.
MATCH (seed:Item {id: $item_id})
WHERE seed.embedding IS NOT NULL  // an item newer than the model: no neighbours, not an error
// twice as many as asked: during a write-back some neighbours still hold the old model's vectors
CALL db.index.vector.queryNodes('item_embedding', 2 * $k + 1, seed.embedding) YIELD node, score
WHERE node <> seed AND node.embedding_model = seed.embedding_model  // one model's, during a write-back
RETURN node.id AS item_id, node.title AS title, score
ORDER BY score DESC, item_id
LIMIT $k
