UNWIND $rows AS row
MERGE (q:Query {id: row.id})
SET q.text = row.text
