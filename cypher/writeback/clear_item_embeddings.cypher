// Items whose vector this model cannot give (not finite, or all zero): any vector they hold goes,
// an earlier write-back's of the same model version too, so the index holds this model's only.
UNWIND $ids AS id
MATCH (i:Item {id: id})
REMOVE i.embedding, i.embedding_model
RETURN count(*) AS written
