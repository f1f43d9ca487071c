-- 0023 (issue 11 follow-up, attachment cache budget): the checked copies of
-- attachments (0018) are kept within the `attachment_cache_mib` setting,
-- the least recently read whole attachments evicted first. `bytes` is an
-- attachment's plaintext kept in pieces; `read_at_ms` when a front end last
-- asked for it (0: never since this migration).
ALTER TABLE attachment_cached ADD COLUMN bytes INTEGER NOT NULL DEFAULT 0;
ALTER TABLE attachment_cached ADD COLUMN read_at_ms INTEGER NOT NULL DEFAULT 0;
UPDATE attachment_cached SET bytes = (
    SELECT COALESCE(SUM(length(p.bytes)), 0) FROM attachment_pieces p
    WHERE p.letter = attachment_cached.letter AND p.idx = attachment_cached.idx
);
CREATE INDEX attachment_cached_by_read ON attachment_cached (read_at_ms);
