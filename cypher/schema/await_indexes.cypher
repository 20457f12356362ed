// Wait until every index is online (queries on a populating full-text index fail): after
// apply_schema remade item_text.
CALL db.awaitIndexes($timeout_s)
