// Which of these ids the graph already holds as :Query nodes (governance accepts references to them).
UNWIND $ids AS id
MATCH (n:Query {id: id})
RETURN n.id AS id
