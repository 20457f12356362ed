// Remove a holder found gone, only if it has not renewed since it was seen: a renewal that lands
// between that look and this delete keeps the lock its holder's.
MATCH (l:KgrecLock {name: $lock, owner: $owner})
WHERE toString(coalesce(l.renewed, l.since)) = $beat
DELETE l
