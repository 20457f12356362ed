// Remove a holder found gone, only if it has not renewed since it was seen: the SET (to the value
// it has) takes the node's write lock first, so a renewal cannot commit between check and delete.
MATCH (l:KgrecLock {name: $lock, owner: $owner})
SET l.owner = l.owner
WITH l
WHERE toString(coalesce(l.renewed, l.since)) = $beat
DELETE l
