UNWIND range(0, size($rows) - 1) AS n
WITH n, $rows[n] AS row
MATCH (q:Query {id: row.query})
MATCH (i:Item {id: row.item})
MERGE (q)-[r:RELEVANT]->(i)
SET r.relevance = row.relevance
WITH DISTINCT n  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
