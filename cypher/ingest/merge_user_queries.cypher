UNWIND $rows AS row
MATCH (u:User {id: row.user})
MATCH (q:Query {id: row.query})
MERGE (u)-[r:SEARCHED {ts: row.ts}]->(q)
RETURN count(*) AS written
