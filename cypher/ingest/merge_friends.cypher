UNWIND $rows AS row
MATCH (a:User {id: row.user})
MATCH (b:User {id: row.friend})
MERGE (a)-[:FRIEND]->(b)
RETURN count(*) AS written
