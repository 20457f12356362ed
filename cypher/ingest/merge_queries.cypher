// Queries by id; an empty text (a node created for an unknown reference) never blanks a stored one.
UNWIND $rows AS row
MERGE (q:Query {id: row.id})
SET q.text = CASE WHEN coalesce(row.text, '') = '' THEN coalesce(q.text, '') ELSE row.text END
