// Embeddings that another model left on items and users this model does not know: removed, so the
// vector index and Cypher similarity never mix two models' vectors; at most $limit per call
// (write-back calls it until none are left), so no transaction holds a whole catalogue's changes.
CALL () {
  MATCH (i:Item) WHERE i.embedding IS NOT NULL AND coalesce(i.embedding_model, '') <> $model RETURN i AS n
  UNION
  MATCH (u:User) WHERE u.embedding IS NOT NULL AND coalesce(u.embedding_model, '') <> $model RETURN u AS n
}
WITH n LIMIT $limit
REMOVE n.embedding, n.embedding_model
RETURN count(*) AS written
