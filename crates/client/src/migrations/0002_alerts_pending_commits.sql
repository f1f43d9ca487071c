-- What the user must see: attacks refused, keys running out, anything the
-- server did that the device did not accept. Kept as evidence.
CREATE TABLE alerts (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    conversation TEXT,
    detail TEXT NOT NULL,
    -- Raw bytes the alert is about (a refused message), for later analysis.
    evidence BLOB,
    seen INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Conversations where this device built a commit the hub has not confirmed:
-- settled by the hub's echo, or discarded once the inbox is read to its end.
CREATE TABLE pending_commits (
    conversation TEXT PRIMARY KEY
) STRICT;
