// User attributes (occupation, gender, ...) as edges to Entity nodes, so the R-GCN sees them.
// The relation name is a property value, never a relationship type.
UNWIND range(0, size($rows) - 1) AS n
WITH n, $rows[n] AS row
MATCH (u:User {id: row.user})
MATCH (e:Entity {id: row.entity})
MERGE (u)-[r:HAS_ATTRIBUTE {relation: row.relation}]->(e)
WITH DISTINCT n  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
