// What the demo is about to write into: how many nodes of data (users, items, queries, entities)
// the database holds, and the dataset spec the demo's marker records (null when no demo has run
// here). kgrec's bookkeeping (a lock left by a killed ingest, a feed watermark) is not data.
CALL () { MATCH (n) WHERE n:User OR n:Item OR n:Query OR n:Entity RETURN count(n) AS nodes }
CALL () { MATCH (m:KgrecDemo) RETURN collect(m.spec)[0] AS spec }
RETURN nodes, spec
