// Delete up to $limit nodes (and their relationships); returns how many went.
MATCH (n) WITH n LIMIT $limit
DETACH DELETE n
RETURN count(*) AS deleted
