// Attribute and knowledge-graph entities; their kind is the `type` property, never a label.
UNWIND $rows AS row
MERGE (e:Entity {id: row.id})
SET e.type = row.type, e.name = row.name
