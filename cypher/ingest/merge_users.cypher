// Users by id; extra properties from the row's props map (values are parameters).
UNWIND $rows AS row
MERGE (u:User {id: row.id})
SET u += coalesce(row.props, {})
