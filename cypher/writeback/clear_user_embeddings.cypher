// Users whose vector this model cannot give (not finite, or all zero): any vector they hold goes,
// an earlier write-back's of the same model version too.
UNWIND $ids AS id
MATCH (u:User {id: id})
REMOVE u.embedding, u.embedding_model
RETURN count(*) AS written
