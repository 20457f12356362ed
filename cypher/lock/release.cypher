// Release a named kgrec lock, only if this owner holds it.
MATCH (l:KgrecLock {name: $lock, owner: $owner})
DELETE l
