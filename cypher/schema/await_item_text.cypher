// Wait until the remade item_text full-text index is online (queries on a populating one fail).
CALL db.awaitIndex('item_text', $timeout_s)
