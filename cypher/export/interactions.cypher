// One record per user with parallel lists: far fewer records to stream than one per event.
// collect() drops nulls, so every column is coalesced to keep the lists aligned.
MATCH (u:User)-[r:INTERACTED]->(i:Item)
RETURN u.id AS user, collect(i.id) AS items, collect(coalesce(r.kind, 'interact')) AS kinds,
       collect(coalesce(r.weight, 1.0)) AS weights, collect(coalesce(r.ts, 0)) AS ts,
       collect(coalesce(r.split, '')) AS splits
