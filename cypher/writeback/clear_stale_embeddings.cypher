// Embeddings that another model left on items and users this model does not know (the element ids
// $ids, from writeback/stale_embedding_nodes): removed, so the vector index and Cypher similarity
// never mix two models' vectors. The condition is checked again: a node changed since the scan keeps
// what it has now.
MATCH (n) WHERE elementId(n) IN $ids
  AND n.embedding IS NOT NULL AND coalesce(n.embedding_model, '') <> $model
REMOVE n.embedding, n.embedding_model
RETURN count(*) AS written
