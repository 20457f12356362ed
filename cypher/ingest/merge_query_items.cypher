UNWIND $rows AS row
MATCH (q:Query {id: row.query})
MATCH (i:Item {id: row.item})
MERGE (q)-[r:RELEVANT]->(i)
SET r.relevance = row.relevance
RETURN count(*) AS written
