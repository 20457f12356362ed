// Remove the attribute links of a user that a load states anew ($rows: {user, relation, entities},
// from the user's own row in a users file): those of that relation to entities the load does not
// give, so a changed value (another country) replaces the stored one instead of joining it.
UNWIND $rows AS row
MATCH (:User {id: row.user})-[r:HAS_ATTRIBUTE {relation: row.relation}]->(e:Entity)
WHERE NOT e.id IN row.entities
DELETE r
