// Graph recall: items bought/clicked by users who share items with this user, by co-occurrence.
MATCH (u:User {id: $user_id})-[:INTERACTED]->(:Item)<-[:INTERACTED]-(peer:User)-[:INTERACTED]->(cand:Item)
WHERE peer <> u AND NOT (u)-[:INTERACTED]->(cand)
RETURN cand.id AS item_id, count(*) AS support
ORDER BY support DESC, item_id
LIMIT $k
