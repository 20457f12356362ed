// Which of these ids the graph already holds as :User nodes (governance accepts references to them).
UNWIND $ids AS id
MATCH (n:User {id: id})
RETURN n.id AS id
