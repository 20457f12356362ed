// Which of $ids already have at least one interaction (their events are merged, not created), or a
// written-back list (a user without events holds one too): merge_interactions takes an item they
// take up off their list, which create_interactions, the first load's path, does not pay for.
UNWIND $ids AS id
MATCH (u:User {id: id})
WHERE EXISTS { (u)-[:INTERACTED|RECOMMENDED]->() }
RETURN u.id AS id
