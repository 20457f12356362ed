// Which of $ids already have at least one interaction (their events are merged, not created).
UNWIND $ids AS id
MATCH (u:User {id: id})
WHERE EXISTS { (u)-[:INTERACTED]->() }
RETURN u.id AS id
