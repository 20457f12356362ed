UNWIND $rows AS row
MATCH (u:User {id: row.id})
CALL db.create.setNodeVectorProperty(u, 'embedding', row.embedding)
SET u.embedding_model = $model
RETURN count(*) AS written
