UNWIND range(0, size($rows) - 1) AS n
WITH n, $rows[n] AS row
MATCH (a:User {id: row.user})
MATCH (b:User {id: row.friend})
MERGE (a)-[:FRIEND]->(b)
WITH DISTINCT n  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
