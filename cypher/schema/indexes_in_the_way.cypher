// Indexes of other names (a user's, or an older kgrec's) that stand where kgrec wants none, or where it needs a
// uniqueness constraint: `blocks` names the constraint a plain index on that property prevents (CREATE CONSTRAINT
// fails on it), `slows` says why an index kgrec leaves out on purpose hurts (cypher/schema/constraints.cypher).
// (SHOW takes a WHERE and a RETURN, no WITH between them.)
SHOW INDEXES YIELD name, type, entityType, labelsOrTypes, properties, owningConstraint
WHERE owningConstraint IS NULL AND type = 'RANGE' AND size(properties) = 1
  AND ((entityType = 'NODE' AND labelsOrTypes[0] + '.' + properties[0] IN
        ['User.id', 'Item.id', 'Query.id', 'Entity.id', 'KgrecMeta.key', 'KgrecLock.name', 'KgrecDemo.id',
         'Item.title', 'Entity.name'])
    OR (entityType = 'RELATIONSHIP' AND labelsOrTypes[0] + '.' + properties[0] IN
        ['INTERACTED.kind', 'INTERACTED.ts', 'RELATED.relation']))
RETURN name, labelsOrTypes[0] + '.' + properties[0] AS target,
       CASE WHEN entityType = 'NODE' AND NOT labelsOrTypes[0] + '.' + properties[0] IN ['Item.title', 'Entity.name']
            THEN labelsOrTypes[0] + '.' + properties[0] END AS blocks,
       CASE WHEN entityType = 'RELATIONSHIP' THEN 'MERGE seeks candidates through it: loads slow to a crawl'
            WHEN labelsOrTypes[0] + '.' + properties[0] IN ['Item.title', 'Entity.name']
            THEN 'its 8 KB key limit fails whole batches on long texts' END AS slows
ORDER BY name
