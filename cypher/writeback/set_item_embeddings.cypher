UNWIND $rows AS row
MATCH (i:Item {id: row.id})
CALL db.create.setNodeVectorProperty(i, 'embedding', row.embedding)
SET i.embedding_model = $model
RETURN count(*) AS written
