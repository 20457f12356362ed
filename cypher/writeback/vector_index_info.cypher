SHOW VECTOR INDEXES YIELD name, options, state
WHERE name = 'item_embedding'
RETURN options.indexConfig['vector.dimensions'] AS dimensions, state
