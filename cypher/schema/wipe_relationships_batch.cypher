// Delete up to $limit relationships: wipe() empties the relationships first, so that every
// transaction's state stays bounded (a DETACH DELETE of dense nodes would take all their edges at once).
MATCH ()-[r]->() WITH r LIMIT $limit
DELETE r
RETURN count(*) AS deleted
