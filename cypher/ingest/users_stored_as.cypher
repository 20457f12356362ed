// The ids of users stored under $id with invisible characters in it (loaded before ingest removed
// them from ids, at any position): the same person to ingest today. A full scan of the users;
// forget-user is rare.
MATCH (u:User)
WHERE trim(reduce(s = u.id, c IN $invisible | replace(s, c, ''))) = $id
RETURN u.id AS id
