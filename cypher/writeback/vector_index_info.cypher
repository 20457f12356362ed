// kgrec's vector index, and any other vector index over :Item(embedding) (which would stop
// CREATE ... IF NOT EXISTS from making kgrec's: Neo4j sees the same schema and does nothing).
SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state
WHERE name = 'item_embedding' OR (labelsOrTypes = ['Item'] AND properties = ['embedding'])
RETURN name, options.indexConfig['vector.dimensions'] AS dimensions,
       toUpper(options.indexConfig['vector.similarity_function']) AS similarity, state
ORDER BY name
