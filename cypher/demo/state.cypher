// What the demo is about to write into: how many nodes the database holds besides kgrec's own
// bookkeeping (the demo's marker, a lock left by a killed ingest, feed watermarks) and how many
// kgrec writes it has had, and the dataset spec the demo's marker records (null when no demo has
// run here) with the node and write counts that demo's load left (null before its ingest finished,
// or, for writes, a marker from before they were counted).
CALL () { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) RETURN count(n) AS nodes }
CALL () { OPTIONAL MATCH (w:KgrecMeta {key: 'graph.writes'}) RETURN w.value AS writes }
CALL () { MATCH (m:KgrecDemo) RETURN collect(m.spec)[0] AS spec, collect(m.nodes)[0] AS loaded,
                                     collect(m.writes)[0] AS loaded_writes }
RETURN nodes, writes, spec, loaded, loaded_writes
