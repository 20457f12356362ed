// One more kgrec write to the graph's data (an ingest, a forget-user): a later `kgrec demo` compares
// the count with the one its load recorded, which a node count alone can miss (a user forgotten and
// another node added since).
MERGE (m:KgrecMeta {key: 'graph.writes'})
SET m.value = coalesce(m.value, 0) + 1
