// Graph recall: items bought/clicked by users who share items with this user; support = the number
// of (shared item, peer) pairs behind each candidate, each counted once however many events they logged.
// Duplicates go at every hop (DISTINCT), so a popular shared item's repeated events never multiply the rows.
MATCH (u:User {id: $user_id})-[:INTERACTED]->(s:Item)
WITH u, collect(DISTINCT s) AS mine
UNWIND mine AS shared
MATCH (shared)<-[:INTERACTED]-(peer:User)
WHERE peer <> u
WITH DISTINCT mine, shared, peer
MATCH (peer)-[:INTERACTED]->(cand:Item)
WHERE NOT cand IN mine
WITH DISTINCT cand, shared, peer
RETURN cand.id AS item_id, count(*) AS support
ORDER BY support DESC, item_id
LIMIT $k
