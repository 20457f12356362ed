// The holder's heartbeat: a lock not renewed for a while is taken over (kg/lock.py).
MATCH (l:KgrecLock {name: $lock, owner: $owner})
SET l.renewed = datetime()
