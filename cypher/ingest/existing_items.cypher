// Which of these ids the graph already holds as :Item nodes (governance accepts references to them).
UNWIND $ids AS id
MATCH (n:Item {id: id})
RETURN n.id AS id
