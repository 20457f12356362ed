UNWIND $rows AS row
MATCH (a:User {id: row.user})
MATCH (b:User {id: row.friend})
MERGE (a)-[:FRIEND]->(b)
WITH DISTINCT row  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
