// A query on the configured database, which connect() runs once: the handshake alone passes a
// database the server lacks and a password the server wants changed before any query.
RETURN 1 AS ok
