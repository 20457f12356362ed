// What the demo is about to write into: how many nodes the database holds besides kgrec's own
// bookkeeping (the demo's marker, a lock left by a killed ingest, feed watermarks), and the dataset
// spec the demo's marker records (null when no demo has run here).
CALL () { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) RETURN count(n) AS nodes }
CALL () { MATCH (m:KgrecDemo) RETURN collect(m.spec)[0] AS spec }
RETURN nodes, spec
