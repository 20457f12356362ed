// The users holding RECOMMENDED lists another model than $model wrote (users this model does not
// know or was not asked to write lists for): their element ids, streamed in one scan for
// writeback/clear_stale_recommendations to clear in batches.
MATCH (u:User)
WHERE EXISTS { (u)-[r:RECOMMENDED]->() WHERE coalesce(r.model, '') <> $model }
RETURN elementId(u) AS id
