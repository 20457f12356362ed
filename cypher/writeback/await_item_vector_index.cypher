// Block until the item vector index has been populated (ONLINE), so vector queries work on return.
CALL db.awaitIndex('item_embedding', $timeout_s)
