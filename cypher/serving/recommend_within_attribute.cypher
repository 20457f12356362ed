// Recommendations within an attribute, for Browser users (:param user_id => 'u0',
// :param entity_id => 'cat:running', :param k => 10): the items holding the attribute or
// knowledge-graph entity, or one a knowledge-graph triple away (an artist's Freebase entity's
// genre), that the user has not interacted with, ranked by the user's model score
// (the dot product of the written-back embeddings), as Recommender.recommend(user, within=[...])
// ranks them for embedding models. On data without triples (the demo's) Browser warns that the
// RELATED relationship type does not exist: harmless, the answer is the same.
MATCH (u:User {id: $user_id})
WHERE u.embedding IS NOT NULL
MATCH (i:Item)-[:HAS_ATTRIBUTE]->(:Entity)-[:RELATED*0..1]->(:Entity {id: $entity_id})
WHERE i.embedding_model = u.embedding_model AND NOT (u)-[:INTERACTED]->(i)  // one model's vectors
WITH DISTINCT u, i
RETURN i.id AS item_id, i.title AS title,
       reduce(s = 0.0, d IN range(0, size(u.embedding) - 1) | s + u.embedding[d] * i.embedding[d]) AS score
ORDER BY score DESC, item_id
LIMIT $k
