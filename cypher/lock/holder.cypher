// Who holds a named kgrec lock (no row when it is free).
MATCH (l:KgrecLock {name: $lock})
RETURN l.owner AS owner, l.host AS host, l.pid AS pid, toString(l.since) AS since
