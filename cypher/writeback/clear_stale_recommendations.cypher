// RECOMMENDED lists another model wrote, on users this model does not know or was not asked to
// write lists for: removed, at most $limit per call (write-back calls it until none are left), so
// Browser users never see two models' lists side by side.
MATCH (:User)-[r:RECOMMENDED]->()
WHERE coalesce(r.model, '') <> $model
WITH r LIMIT $limit
DELETE r
RETURN count(*) AS written
