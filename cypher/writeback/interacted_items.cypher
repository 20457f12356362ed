// The items each of these users has interacted with in the graph now (events since the model's
// snapshot included), which their RECOMMENDED list must leave out.
UNWIND $users AS uid
MATCH (:User {id: uid})-[:INTERACTED]->(i:Item)
RETURN uid AS user, collect(DISTINCT i.id) AS items
