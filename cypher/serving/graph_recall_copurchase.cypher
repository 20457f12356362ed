// Graph recall: items bought/clicked by users who share items with this user; support = the number
// of (shared item, peer) pairs behind each candidate, each counted once however many events they logged.
// Each peer's overlap with the user is counted first, so a peer's history is expanded once, not once
// per item they share, and only distinct candidates are checked against the user's own items
// (bench/bench_graph_recall.py: the heaviest gowalla user ran out of transaction memory before); each
// peer's items are made distinct on their own, so memory grows with the catalogue, not the peers' events.
MATCH (u:User {id: $user_id})-[:INTERACTED]->(s:Item)
WITH u, collect(DISTINCT s) AS mine
CALL (u, mine) {
  UNWIND mine AS shared
  MATCH (shared)<-[:INTERACTED]-(peer:User)
  WHERE peer <> u
  WITH peer, count(DISTINCT shared) AS overlap
  CALL (peer) {  // one peer's distinct items at a time: no set of every (peer, item) pair is held
    MATCH (peer)-[:INTERACTED]->(cand:Item)
    RETURN DISTINCT cand
  }
  RETURN cand, sum(overlap) AS support
}
WITH mine, cand, support
WHERE NOT cand IN mine
RETURN cand.id AS item_id, support
ORDER BY support DESC, item_id
LIMIT $k
