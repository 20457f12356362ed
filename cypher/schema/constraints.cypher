// kgrec schema: uniqueness constraints on every node id, indexes used by loaders and queries.
// Applied idempotently by kg.schema.apply_schema (IF NOT EXISTS).
// Accents folded (ASCII folding), so 'Bjork' finds 'Björk'; unlike the default analyzer, this one
// also drops English stop words ('the', 'it'), in the index and in queries alike. kg.schema.ITEM_TEXT_ANALYZER;
// an item_text of Neo4j's default analyzer (an older kgrec's) is remade, one of another kept. First,
// so that a constraint an index blocks (a SchemaConflictError) does not leave a remade one missing.
CREATE FULLTEXT INDEX item_text IF NOT EXISTS FOR (i:Item) ON EACH [i.title, i.description]
OPTIONS {indexConfig: {`fulltext.analyzer`: 'standard-folding'}};
CREATE CONSTRAINT user_id IF NOT EXISTS FOR (u:User) REQUIRE u.id IS UNIQUE;
CREATE CONSTRAINT item_id IF NOT EXISTS FOR (i:Item) REQUIRE i.id IS UNIQUE;
CREATE CONSTRAINT query_id IF NOT EXISTS FOR (q:Query) REQUIRE q.id IS UNIQUE;
CREATE CONSTRAINT entity_id IF NOT EXISTS FOR (e:Entity) REQUIRE e.id IS UNIQUE;
CREATE CONSTRAINT meta_key IF NOT EXISTS FOR (m:KgrecMeta) REQUIRE m.key IS UNIQUE;
CREATE CONSTRAINT lock_name IF NOT EXISTS FOR (l:KgrecLock) REQUIRE l.name IS UNIQUE;
// two demos at once before demo_id existed could leave two markers, on which the constraint fails
MATCH (m:KgrecDemo) WITH m.id AS id, collect(m) AS markers WHERE size(markers) > 1
UNWIND markers[1..] AS extra DETACH DELETE extra;
CREATE CONSTRAINT demo_id IF NOT EXISTS FOR (m:KgrecDemo) REQUIRE m.id IS UNIQUE;
CREATE INDEX entity_type IF NOT EXISTS FOR (e:Entity) ON (e.type);
// No index on relationship properties that MERGE matches on: the planner would seek MERGE
// candidates through it, and with many events sharing a timestamp (ts = 0 in LightGCN data), or
// many triples sharing a relation name, every MERGE would scan them all. With related_relation a
// knowledge graph's first triples loaded at 89 rows/s, without it at about 10k (docs/ingest.md).
DROP INDEX interacted_kind IF EXISTS;
DROP INDEX interacted_ts IF EXISTS;
DROP INDEX related_relation IF EXISTS;
// No range index on titles or names: no kgrec statement looks them up, and a range index's 8 KB key
// limit failed a whole batch on a title or name governance takes (up to max_text_chars). The
// item_text full-text index serves searches by title.
DROP INDEX entity_name IF EXISTS;
DROP INDEX item_title IF EXISTS;
