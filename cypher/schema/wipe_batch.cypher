// Delete up to $limit nodes (and their relationships), but no :KgrecLock node when $keep_locks;
// returns how many went.
MATCH (n) WHERE NOT ($keep_locks AND n:KgrecLock)
WITH n LIMIT $limit
DETACH DELETE n
RETURN count(*) AS deleted
