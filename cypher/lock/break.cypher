// Remove a named kgrec lock whoever holds it (its holder died on another machine).
MATCH (l:KgrecLock {name: $lock})
DELETE l
