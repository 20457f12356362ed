// Remove the attribute links of an item that a load states anew ($rows: {item, relation, entities},
// from the item's own row in an items file): those of that relation to entities the load does not
// give, so a changed value (a product moved from category shoes to home) replaces the stored one
// instead of joining it.
UNWIND $rows AS row
MATCH (:Item {id: row.item})-[r:HAS_ATTRIBUTE {relation: row.relation}]->(e:Entity)
WHERE NOT e.id IN row.entities
DELETE r
