// Attribute and knowledge-graph entities; their kind is the `type` property, never a label.
// A placeholder row (created for an unknown reference: type 'kg', name = id) only fills what is unset;
// a blank name never replaces a stored one.
UNWIND $rows AS row
MERGE (e:Entity {id: row.id})
SET e.type = CASE WHEN row.placeholder THEN coalesce(e.type, row.type) ELSE row.type END,
    e.name = CASE WHEN row.placeholder OR coalesce(row.name, '') = '' THEN coalesce(e.name, row.name)
                  ELSE row.name END
