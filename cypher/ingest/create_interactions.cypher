// Events of users with no INTERACTED relationship yet (checked by ingest/users_with_interactions
// just before): plain CREATE, as the events were deduplicated by (user, item, kind, ts) first.
// Rows are per user, with parallel event lists (columnar).
UNWIND $rows AS row
MATCH (u:User {id: row.user})
UNWIND range(0, size(row.item) - 1) AS k
MATCH (i:Item {id: row.item[k]})
CREATE (u)-[:INTERACTED {kind: row.kind[k], ts: row.ts[k], weight: row.weight[k], split: row.split[k]}]->(i)
RETURN count(*) AS written
