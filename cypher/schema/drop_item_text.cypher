// Drop the item_text full-text index (made with another analyzer): schema/constraints makes it again.
DROP INDEX item_text IF EXISTS
