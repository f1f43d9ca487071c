-- Delivery v2: the server's inbox cursor is opaque (it carries the
-- server's log position and a check of its history). `inbox_seq`, the
-- position of delivery v1, is no longer read: entries are never skipped
-- by a number the server chose; the engine recognises what it applied.
ALTER TABLE account ADD COLUMN inbox_cursor BLOB;
