-- Issue 9: letters delivered before the commit that starts their epoch (a
-- hostile server can reorder) wait here in order of arrival, and are opened
-- right after a commit brings the conversation to their epoch
-- (engine/held.rs). The inbox entry is kept as delivered: its number, the
-- sender the server named, the message. Bounded per conversation; the
-- oldest go first, with an alert. `alerted`: still held after a read of the
-- whole inbox (its commit withheld), which was said once.
CREATE TABLE held_letters (
    id INTEGER PRIMARY KEY,
    conversation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    inbox_seq INTEGER NOT NULL,
    sender TEXT NOT NULL,
    message BLOB NOT NULL,
    alerted INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX held_letters_by_conversation ON held_letters (conversation, id);
