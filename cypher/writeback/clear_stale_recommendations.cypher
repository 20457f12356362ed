// RECOMMENDED lists another model wrote, on the users $ids (element ids, from
// writeback/stale_recommendation_users): removed, so Browser users never see two models' lists side
// by side.
MATCH (u:User) WHERE elementId(u) IN $ids
MATCH (u)-[r:RECOMMENDED]->()
WHERE coalesce(r.model, '') <> $model
DELETE r
RETURN count(*) AS written
