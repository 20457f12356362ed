MATCH (u:User)-[r:INTERACTED]->(i:Item)
RETURN u.id AS user, i.id AS item, r.kind AS kind, r.weight AS weight, r.ts AS ts, r.split AS split
