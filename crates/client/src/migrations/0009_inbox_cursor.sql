-- Delivery v2: the server's inbox cursor is opaque (it carries the
-- server's log position and a check of its history); `inbox_seq` stays
-- the highest log position applied, to skip replays.
ALTER TABLE account ADD COLUMN inbox_cursor BLOB;
