-- Issue 9: a server restored from an older copy of its data may have lost
-- letters this device sent. With the restart of the inbox the device notes
-- that its letters of each conversation's current epoch are to be sealed
-- again; the note is cleared once they are, so a re-read cut short by an
-- error still ends with the re-send.
ALTER TABLE account ADD COLUMN resend_due INTEGER NOT NULL DEFAULT 0;
