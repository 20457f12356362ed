// One record per user with parallel lists: far fewer records to stream than one per event.
// Each user's lists are collected in a subquery of their own, so Neo4j streams user after user
// instead of grouping every interaction of the graph in its heap first (an eager aggregation).
// collect() drops nulls, so every column is coalesced to keep the lists aligned.
MATCH (u:User)
CALL (u) {
  MATCH (u)-[r:INTERACTED]->(i:Item)
  RETURN collect(i.id) AS items, collect(coalesce(r.kind, 'interact')) AS kinds,
         collect(coalesce(r.weight, 1.0)) AS weights, collect(coalesce(r.ts, 0)) AS ts,
         collect(coalesce(r.split, '')) AS splits
}
WITH u, items, kinds, weights, ts, splits WHERE size(items) > 0
RETURN u.id AS user, items, kinds, weights, ts, splits
