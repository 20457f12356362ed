// Privacy: remove a user with every event, search and friendship they have, and the queries only
// they searched (the text they typed), unless the data links a query to relevant items: then it is
// catalogue data and stays, without their SEARCHED. $ids are the forms the id may be stored in (as
// ingest stores ids now, and as it did before invisible characters were removed from them): all of
// them are the one person (so a query only their forms searched goes too). An attribute value only
// they hold (a zip code) goes too: linked to nothing else, it is theirs, not catalogue data.
UNWIND $ids AS id
MATCH (u:User {id: id})
CALL (u) {
  MATCH (u)-[:SEARCHED]->(q:Query)
  WHERE NOT EXISTS { (q)<-[:SEARCHED]-(other:User) WHERE NOT other.id IN $ids } AND NOT EXISTS { (q)-[:RELEVANT]->() }
  DETACH DELETE q
}
CALL (u) {
  MATCH (u)-[:HAS_ATTRIBUTE]->(e:Entity)
  WHERE NOT EXISTS { (e)--(other) WHERE NOT (other:User AND other.id IN $ids) }
  DETACH DELETE e
}
DETACH DELETE u
RETURN count(*) AS deleted
