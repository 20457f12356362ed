// The analyzer of the item_text full-text index, if there is one (an older kgrec made it without
// accent folding; apply_schema then drops it for schema/constraints to make it again).
SHOW FULLTEXT INDEXES YIELD name, options
WHERE name = 'item_text'
RETURN options.indexConfig['fulltext.analyzer'] AS analyzer
