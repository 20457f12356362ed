// Record that a dataset was loaded into this database ($key: its KgrecMeta key; the value is when
// it was first loaded, in ms since the epoch).
MERGE (m:KgrecMeta {key: $key})
ON CREATE SET m.value = timestamp()
