// Free-text search ranked for one user, for Browser users (:param query => 'trail sneaker',
// :param user_id => 'u0', :param k => 10; the query is Lucene syntax). The 100 (or k) best full-text
// matches of the items' title and description (the item_text index) that the user has not
// interacted with, ordered by reciprocal rank fusion of the text order and the user's model score
// (the dot product of the written-back embeddings), as serving.search ranks them for embedding
// models (a graph filter's written-back embeddings are only its low-pass part): equal scores share
// the best rank of theirs, and fused ties go in text order. Matches without this
// model's vector (items newer than its write-back, a graph filter's items without events) come last
// in the model's order, so they are still found, and ranked by their text; a user without a vector
// (newer than the write-back) gets the text order alone.
MATCH (u:User {id: $user_id})
// the 100 (or k) best, over-fetched by the user's items, which are left out below
CALL db.index.fulltext.queryNodes('item_text', $query,
                                  {limit: CASE WHEN $k > 100 THEN $k ELSE 100 END + COUNT { (u)-[:INTERACTED]->() }})
  YIELD node, score
WITH u, node AS i, score
WHERE NOT (u)-[:INTERACTED]->(i)
WITH u, i, score ORDER BY score DESC, i.id
WITH u, collect({i: i, s: score})[..CASE WHEN $k > 100 THEN $k ELSE 100 END] AS by_text
UNWIND range(0, size(by_text) - 1) AS t
WITH u, by_text[t].i AS i, size([x IN by_text WHERE x.s > by_text[t].s]) + 1 AS text_rank, t AS pos
WITH i, text_rank, pos, CASE WHEN i.embedding_model = u.embedding_model  // one model's vectors, never two
  THEN reduce(s = 0.0, d IN range(0, size(u.embedding) - 1) | s + u.embedding[d] * i.embedding[d]) END AS model
ORDER BY model IS NULL, model DESC, pos
WITH collect({item: i, text_rank: text_rank, pos: pos, model: model}) AS by_model
UNWIND range(0, size(by_model) - 1) AS m
WITH by_model[m].item AS i, by_model[m].text_rank AS text_rank, by_model[m].pos AS pos,
     CASE WHEN by_model[m].model IS NULL THEN m + 1
          ELSE size([x IN by_model WHERE x.model > by_model[m].model]) + 1 END AS model_rank
RETURN i.id AS item_id, i.title AS title, 1.0 / (60 + text_rank) + 1.0 / (60 + model_rank) AS score
ORDER BY score DESC, pos
LIMIT $k
