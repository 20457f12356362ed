// The items and users holding an embedding of another model than $model (left by an earlier
// write-back on nodes this model does not know): their element ids, streamed in one scan for
// writeback/clear_stale_embeddings to clear in batches.
MATCH (i:Item) WHERE i.embedding IS NOT NULL AND coalesce(i.embedding_model, '') <> $model
RETURN elementId(i) AS id
UNION ALL
MATCH (u:User) WHERE u.embedding IS NOT NULL AND coalesce(u.embedding_model, '') <> $model
RETURN elementId(u) AS id
