// kgrec's vector index, and any other vector index over :Item(embedding) (which would stop
// CREATE ... IF NOT EXISTS from making kgrec's: Neo4j sees the same schema and does nothing).
// `quantized`: Neo4j 5.23+ compresses the indexed vectors unless told not to, and its neighbours and
// scores then differ from the model's cosine (null on servers without the setting).
SHOW VECTOR INDEXES YIELD name, labelsOrTypes, properties, options, state
WHERE name = 'item_embedding' OR (labelsOrTypes = ['Item'] AND properties = ['embedding'])
RETURN name, labelsOrTypes AS labels, properties, options.indexConfig['vector.dimensions'] AS dimensions,
       toUpper(options.indexConfig['vector.similarity_function']) AS similarity,
       options.indexConfig['vector.quantization.enabled'] AS quantized, state
ORDER BY name
