-- The device's own account: one row.
CREATE TABLE account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    server TEXT NOT NULL,
    ca_pem TEXT NOT NULL,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    signature_key BLOB NOT NULL,
    domain TEXT NOT NULL,
    -- Highest inbox sequence number processed; entries at or below it are skipped.
    inbox_seq INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Conversations this device is (or was) a member of; the MLS group holds the rest.
CREATE TABLE conversations (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL DEFAULT '',
    -- Sorted member list: the conversation `send --to` reuses for exactly these people.
    direct_key TEXT,
    created_at_ms INTEGER NOT NULL,
    active INTEGER NOT NULL DEFAULT 1
) STRICT;
CREATE UNIQUE INDEX conversations_direct ON conversations (direct_key) WHERE direct_key IS NOT NULL;

-- Letters received and sent.
CREATE TABLE letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    message_id TEXT NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    recipients TEXT NOT NULL,
    thread TEXT NOT NULL,
    in_reply_to TEXT,
    marking TEXT,
    sent_at_ms INTEGER NOT NULL,
    received_at_ms INTEGER NOT NULL,
    outgoing INTEGER NOT NULL DEFAULT 0,
    UNIQUE (conversation, sender_user, message_id)
) STRICT;
CREATE INDEX letters_received ON letters (outgoing, id);

-- Sealed application messages not yet accepted by the server. The MLS
-- ratchet has moved on for them, so they must be sent, never re-made.
CREATE TABLE outbox (
    message_id TEXT PRIMARY KEY,
    conversation TEXT NOT NULL,
    plaintext BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    ciphertext BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
