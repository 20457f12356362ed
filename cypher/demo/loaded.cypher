// After the demo's ingest: record how many nodes its dataset left (kgrec's bookkeeping aside), so a
// later demo can tell data loaded or removed since (a `kgrec ingest`, a `forget-user`).
MATCH (m:KgrecDemo {id: 'demo'})
CALL () { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) RETURN count(n) AS nodes }
SET m.nodes = nodes
