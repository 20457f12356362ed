UNWIND range(0, size($rows) - 1) AS n
WITH n, $rows[n] AS row
MATCH (u:User {id: row.user})
MATCH (q:Query {id: row.query})
MERGE (u)-[r:SEARCHED {ts: row.ts}]->(q)
WITH DISTINCT n  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
