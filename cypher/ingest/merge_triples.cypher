// Knowledge-graph triples between entities; unseen entities are created with type 'kg'.
UNWIND $rows AS row
MERGE (h:Entity {id: row.head})
  ON CREATE SET h.type = 'kg', h.name = row.head
MERGE (t:Entity {id: row.tail})
  ON CREATE SET t.type = 'kg', t.name = row.tail
MERGE (h)-[r:RELATED {relation: row.relation}]->(t)
