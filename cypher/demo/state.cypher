// What the demo is about to write into: how many nodes the database holds besides the demo's
// marker, and the dataset spec the marker records (null when no demo has run here).
CALL () { MATCH (n) RETURN count(n) AS total }
CALL () { MATCH (m:KgrecDemo) RETURN count(m) AS markers, collect(m.spec)[0] AS spec }
RETURN total - markers AS nodes, spec
