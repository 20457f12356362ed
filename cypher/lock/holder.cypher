// Who holds a named kgrec lock, and how many seconds since its last heartbeat (no row when free);
// beat is that heartbeat's time, which lock/take_over checks again.
MATCH (l:KgrecLock {name: $lock})
RETURN l.owner AS owner, l.host AS host, l.pid AS pid, l.proc AS proc, toString(l.since) AS since,
       duration.inSeconds(coalesce(l.renewed, l.since), datetime()).seconds AS idle_s,
       toString(coalesce(l.renewed, l.since)) AS beat
