-- Issue 10: the server's audit key, pinned at enrolment, and how far this
-- device read the administrator's actions on its account (the newest
-- checkpoint it verified, and the next entry number to ask for: from the
-- log position of its enrolment, what came before concerns its arrival).
-- audit_conflict_at: the checkpoint (note; '' for none) this device stood
-- at when it last raised audit_conflict, so that a conflict that lasts is
-- said once, not on every sync.
ALTER TABLE account ADD COLUMN audit_origin TEXT;
ALTER TABLE account ADD COLUMN audit_conflict_at TEXT;
ALTER TABLE account ADD COLUMN audit_key BLOB;
ALTER TABLE account ADD COLUMN audit_checkpoint TEXT;
ALTER TABLE account ADD COLUMN audit_next INTEGER NOT NULL DEFAULT 0;
