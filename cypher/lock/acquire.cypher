// Take a named kgrec lock: fails on the KgrecLock name constraint while another holder has it.
CREATE (l:KgrecLock {name: $lock, owner: $owner, host: $host, pid: $pid, proc: $proc,
                     since: datetime(), renewed: datetime()})
