// After the demo's ingest: record how many nodes its dataset left (kgrec's bookkeeping aside) and
// how many kgrec writes the graph has had, so a later demo can tell data loaded or removed since
// (a `kgrec ingest`, a `forget-user`, or a write outside kgrec that changed the node count).
MATCH (m:KgrecDemo {id: 'demo'})
CALL () { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) RETURN count(n) AS nodes }
OPTIONAL MATCH (w:KgrecMeta {key: 'graph.writes'})
SET m.nodes = nodes, m.writes = w.value
