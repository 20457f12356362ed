// Set a feed's watermark to $value, lower than it is too (kgrec watermark --set).
MERGE (m:KgrecMeta {key: $key})
SET m.value = $value
