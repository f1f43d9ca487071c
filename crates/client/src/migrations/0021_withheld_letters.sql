-- A marked letter this device may not hold (not accredited for its
-- marking, or above its conversation's ceiling) is kept as a stub: who
-- sent it, when, its thread and marking, and why it is withheld; never its
-- subject, body, recipients or attachments (issue 12: a mail client shows
-- the stub, not a gap).
ALTER TABLE letters ADD COLUMN withheld TEXT;
