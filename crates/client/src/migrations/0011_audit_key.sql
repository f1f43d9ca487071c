-- Issue 10: the server's audit key, pinned at enrolment, and how far this
-- device read the administrator's actions on its account (the newest
-- checkpoint it verified, the next entry number to ask for, and when it
-- enrolled: what came before concerns its own arrival).
ALTER TABLE account ADD COLUMN audit_origin TEXT;
ALTER TABLE account ADD COLUMN audit_key BLOB;
ALTER TABLE account ADD COLUMN audit_since_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN audit_checkpoint TEXT;
ALTER TABLE account ADD COLUMN audit_next INTEGER NOT NULL DEFAULT 0;
