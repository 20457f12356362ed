// The datasets whose loads this database recorded (`kgrec ingest` of a packaged or benchmark
// dataset: names after $prefix, first loaded first), and whether it holds any node besides kgrec's
// own bookkeeping (the demo's marker, locks, watermarks and these records).
CALL () { RETURN EXISTS { MATCH (n) WHERE NOT (n:KgrecDemo OR n:KgrecLock OR n:KgrecMeta) } AS holds_data }
CALL () { OPTIONAL MATCH (m:KgrecMeta) WHERE m.key STARTS WITH $prefix
          WITH m ORDER BY m.value
          RETURN collect(substring(m.key, size($prefix))) AS datasets }
RETURN holds_data, datasets
