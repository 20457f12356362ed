UNWIND $rows AS row
MATCH (u:User {id: row.user})
MATCH (q:Query {id: row.query})
MERGE (u)-[r:SEARCHED {ts: row.ts}]->(q)
WITH DISTINCT row  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
