// The relation name (genre, brand, ...) is a property value, never a relationship type.
UNWIND range(0, size($rows) - 1) AS n
WITH n, $rows[n] AS row
MATCH (i:Item {id: row.item})
MATCH (e:Entity {id: row.entity})
MERGE (i)-[r:HAS_ATTRIBUTE {relation: row.relation}]->(e)
WITH DISTINCT n  // one per row, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
