MATCH (e:Entity) RETURN e.id AS id, e.type AS type, e.name AS name
