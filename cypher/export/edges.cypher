// Every typed relation except interactions, as (prefixed relation name, source id, target id, and a
// search's time: the export leaves out searches made once a user's held-out events began).
CALL () {
  MATCH (i:Item)-[r:HAS_ATTRIBUTE]->(e:Entity) RETURN 'has:' + r.relation AS relation, 'item' AS src_type, i.id AS src, 'entity' AS dst_type, e.id AS dst, null AS ts
  UNION ALL
  MATCH (u:User)-[r:HAS_ATTRIBUTE]->(e:Entity) RETURN 'user:' + r.relation AS relation, 'user' AS src_type, u.id AS src, 'entity' AS dst_type, e.id AS dst, null AS ts
  UNION ALL
  MATCH (h:Entity)-[r:RELATED]->(t:Entity) RETURN 'kg:' + r.relation AS relation, 'entity' AS src_type, h.id AS src, 'entity' AS dst_type, t.id AS dst, null AS ts
  UNION ALL
  MATCH (u:User)-[s:SEARCHED]->(q:Query) RETURN 'searched' AS relation, 'user' AS src_type, u.id AS src, 'query' AS dst_type, q.id AS dst, s.ts AS ts
  UNION ALL
  MATCH (q:Query)-[:RELEVANT]->(i:Item) RETURN 'relevant' AS relation, 'query' AS src_type, q.id AS src, 'item' AS dst_type, i.id AS dst, null AS ts
  UNION ALL
  MATCH (a:User)-[:FRIEND]->(b:User) RETURN 'friend' AS relation, 'user' AS src_type, a.id AS src, 'user' AS dst_type, b.id AS dst, null AS ts
}
RETURN relation, src_type, src, dst_type, dst, ts
