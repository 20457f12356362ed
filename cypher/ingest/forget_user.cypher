// Privacy: remove a user with every event, search and friendship they have.
MATCH (u:User {id: $id})
DETACH DELETE u
RETURN count(*) AS deleted
