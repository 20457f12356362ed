SHOW VECTOR INDEXES YIELD name, options, state
WHERE name = 'item_embedding'
RETURN options.indexConfig['vector.dimensions'] AS dimensions,
       toUpper(options.indexConfig['vector.similarity_function']) AS similarity, state
