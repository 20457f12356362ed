// Events of users who already have some: one relationship per distinct (user, item, kind, ts),
// merged so a re-run changes nothing. Rows are per user, with parallel event lists (columnar).
// `resplit` counts events stored with another non-empty split that this row moves to its own
// (ingest warns: a model trained before may have trained on what is now a test event).
UNWIND $rows AS row
MATCH (u:User {id: row.user})
UNWIND range(0, size(row.item) - 1) AS k
MATCH (i:Item {id: row.item[k]})
MERGE (u)-[r:INTERACTED {kind: row.kind[k], ts: row.ts[k]}]->(i)
WITH u, k, r, row, coalesce(r.split, '') AS stored
// a blank split never blanks a stored one (an undated event sent again by a later file without splits)
SET r.weight = row.weight[k], r.split = CASE WHEN row.split[k] = '' THEN stored ELSE row.split[k] END
// one per event, however many relationships (duplicates made outside kgrec) it matched
WITH u, k, max(CASE WHEN stored <> '' AND row.split[k] <> '' AND stored <> row.split[k] THEN 1 ELSE 0 END) AS moved
RETURN count(*) AS written, sum(moved) AS resplit
