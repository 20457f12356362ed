// What the demo is about to write into: how many nodes the database holds besides kgrec's own
// bookkeeping (the demo's marker, a lock left by a killed ingest, feed watermarks), and the dataset
// spec the demo's marker records (null when no demo has run here) and how many nodes that demo's
// load left (null before its ingest finished).
CALL () { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) RETURN count(n) AS nodes }
CALL () { MATCH (m:KgrecDemo) RETURN collect(m.spec)[0] AS spec, collect(m.nodes)[0] AS loaded }
RETURN nodes, spec, loaded
