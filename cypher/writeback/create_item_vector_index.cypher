// Neo4j native vector index over item embeddings (dimension from the model artifact).
CREATE VECTOR INDEX item_embedding IF NOT EXISTS
FOR (i:Item) ON i.embedding
OPTIONS $options
