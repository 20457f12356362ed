// Graph recall: items bought/clicked by users who share items with this user; support = the number
// of (shared item, peer) pairs behind each candidate, each counted once however many events they logged.
MATCH (u:User {id: $user_id})-[:INTERACTED]->(shared:Item)<-[:INTERACTED]-(peer:User)-[:INTERACTED]->(cand:Item)
WHERE peer <> u AND NOT (u)-[:INTERACTED]->(cand)
WITH DISTINCT cand, shared, peer
RETURN cand.id AS item_id, count(*) AS support
ORDER BY support DESC, item_id
LIMIT $k
