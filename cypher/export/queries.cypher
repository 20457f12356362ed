MATCH (q:Query) RETURN q.id AS id, q.text AS text
