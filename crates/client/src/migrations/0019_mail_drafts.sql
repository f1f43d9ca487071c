-- 0019 (issue 12, mail bridge Drafts): what a mail client APPENDs to its
-- Drafts folder, kept here (sealed) byte for byte and never sent to the
-- server. UIDs come from the `Drafts` row of mail_folders (UIDVALIDITY
-- drawn once); EXPUNGE deletes the row, content and all.
CREATE TABLE mail_drafts (
    uid INTEGER PRIMARY KEY,
    message BLOB NOT NULL,
    appended_at_ms INTEGER NOT NULL,
    seen INTEGER NOT NULL DEFAULT 0,
    flagged INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0
) STRICT;
