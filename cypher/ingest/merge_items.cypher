// Items by id. An empty or missing title/description (a node created for an unknown reference, or a
// file without that column) never blanks text already stored.
UNWIND $rows AS row
MERGE (i:Item {id: row.id})
SET i.title = CASE WHEN coalesce(row.title, '') = '' THEN coalesce(i.title, '') ELSE row.title END,
    i.description = CASE WHEN coalesce(row.description, '') = '' THEN coalesce(i.description, '')
                         ELSE row.description END,
    i += coalesce(row.props, {})
