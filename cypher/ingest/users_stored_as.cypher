// The ids of users stored under $id with invisible characters in it (loaded before ingest removed
// them from ids, at any position): the same person to ingest today. Removed, then NFKC-normalised
// and trimmed as Python's id_text does (a removed zero-width space can let an accent compose).
// A full scan of the users; forget-user is rare.
MATCH (u:User)
WHERE trim(normalize(reduce(s = u.id, c IN $invisible | replace(s, c, '')), NFKC)) = $id
RETURN u.id AS id
