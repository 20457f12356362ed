// One relationship per distinct (user, item, kind, ts) event; re-running changes nothing.
UNWIND $rows AS row
MATCH (u:User {id: row.user})
MATCH (i:Item {id: row.item})
MERGE (u)-[r:INTERACTED {kind: row.kind, ts: row.ts}]->(i)
SET r.weight = row.weight, r.split = row.split
