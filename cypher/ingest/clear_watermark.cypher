// Remove a feed's watermark (kgrec watermark --clear): its next --incremental load skips nothing.
MATCH (m:KgrecMeta {key: $key})
DELETE m
