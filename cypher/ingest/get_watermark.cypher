MATCH (m:KgrecMeta {key: $key})
RETURN m.value AS value
