UNWIND $rows AS row
MERGE (i:Item {id: row.id})
SET i.title = coalesce(row.title, i.title, ''),
    i.description = coalesce(row.description, i.description, ''),
    i += coalesce(row.props, {})
