// Which of these ids the graph already holds as :Entity nodes (governance accepts references to them).
UNWIND $ids AS id
MATCH (n:Entity {id: id})
RETURN n.id AS id
