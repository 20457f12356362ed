CALL () { MATCH (n:User) RETURN count(n) AS users }
CALL () { MATCH (n:Item) RETURN count(n) AS items }
CALL () { MATCH (n:Query) RETURN count(n) AS queries }
CALL () { MATCH (n:Entity) RETURN count(n) AS entities }
CALL () { MATCH ()-[r]->() RETURN count(r) AS relationships }
RETURN users, items, queries, entities, relationships
