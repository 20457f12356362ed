MERGE (m:KgrecMeta {key: $key})
SET m.value = CASE WHEN m.value IS NULL OR m.value < $value THEN $value ELSE m.value END
