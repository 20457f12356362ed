// One event per transaction: the slow baseline that bench/bench_ingest_write.py compares against.
MATCH (u:User {id: $user})
MATCH (i:Item {id: $item})
MERGE (u)-[r:INTERACTED {kind: $kind, ts: $ts}]->(i)
SET r.weight = $weight, r.split = $split
