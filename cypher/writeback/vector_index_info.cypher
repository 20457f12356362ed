// kgrec's vector index, and any other vector index over :Item(embedding) (which would stop
// CREATE ... IF NOT EXISTS from making kgrec's: Neo4j sees the same schema and does nothing).
// `quantized`: Neo4j 5.23+ compresses the indexed vectors unless told not to, and its neighbours and
// scores then differ from the model's cosine.
SHOW VECTOR INDEXES YIELD name, entityType, labelsOrTypes, properties, options, state
WHERE name = 'item_embedding' OR (labelsOrTypes = ['Item'] AND properties = ['embedding'])
RETURN name, entityType AS entity, labelsOrTypes AS labels, properties,
       options.indexConfig['vector.dimensions'] AS dimensions,
       toUpper(options.indexConfig['vector.similarity_function']) AS similarity,
       options.indexConfig['vector.quantization.enabled'] AS quantized, state
ORDER BY name
