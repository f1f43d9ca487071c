-- Orphan blobs (issue 11): a complete blob stays only once its owner named
-- it in a letter about to go (`POST /v1/blobs/links`); one no letter named
-- within the window of unfinished uploads is swept like them, and stops
-- counting against the quota. Blobs completed before this migration were
-- made by clients that never link: they count as linked when completed.
ALTER TABLE blobs ADD COLUMN linked_at_ms INTEGER;
UPDATE blobs SET linked_at_ms = created_at_ms WHERE durable = length;
DROP INDEX blobs_incomplete;
CREATE INDEX blobs_unlinked ON blobs (created_at_ms) WHERE linked_at_ms IS NULL;
