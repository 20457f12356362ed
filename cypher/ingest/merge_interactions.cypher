// Events of users who already have some: one relationship per distinct (user, item, kind, ts),
// merged so a re-run changes nothing. Rows are per user, with parallel event lists (columnar).
UNWIND $rows AS row
MATCH (u:User {id: row.user})
UNWIND range(0, size(row.item) - 1) AS k
MATCH (i:Item {id: row.item[k]})
MERGE (u)-[r:INTERACTED {kind: row.kind[k], ts: row.ts[k]}]->(i)
// a blank split never blanks a stored one (an undated event sent again by a later file without splits)
SET r.weight = row.weight[k], r.split = CASE WHEN row.split[k] = '' THEN coalesce(r.split, '') ELSE row.split[k] END
WITH DISTINCT u, k  // one per event, however many relationships (duplicates made outside kgrec) it matched
RETURN count(*) AS written
