-- Valise server schema v1. The server holds ciphertext, public keys and
-- hashes of secrets only.
CREATE TABLE users (
    user TEXT PRIMARY KEY NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE devices (
    user TEXT NOT NULL REFERENCES users(user),
    device TEXT NOT NULL,
    signature_key BLOB NOT NULL,
    enrolled_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) STRICT;

CREATE TABLE invites (
    code_hash BLOB PRIMARY KEY NOT NULL,
    user TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    used_at_ms INTEGER
) STRICT;

CREATE TABLE tokens (
    token_hash BLOB PRIMARY KEY NOT NULL,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    expires_at_ms INTEGER NOT NULL,
    FOREIGN KEY (user, device) REFERENCES devices(user, device)
) STRICT;

CREATE TABLE key_packages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    bytes BLOB NOT NULL,
    last_resort INTEGER NOT NULL,
    FOREIGN KEY (user, device) REFERENCES devices(user, device)
) STRICT;
CREATE INDEX key_packages_by_device ON key_packages(user, device, last_resort, id);

CREATE TABLE conversations (
    id BLOB PRIMARY KEY NOT NULL,
    epoch INTEGER NOT NULL,
    ciphersuite INTEGER NOT NULL,
    state BLOB NOT NULL,
    created_by_user TEXT NOT NULL,
    created_by_device TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

CREATE TABLE members (
    conversation BLOB NOT NULL REFERENCES conversations(id),
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    PRIMARY KEY (conversation, user, device)
) STRICT;

-- kind: 1 commit, 2 welcome, 3 application.
CREATE TABLE payloads (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation BLOB NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    kind INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    ratchet_tree BLOB,
    client_msg_id BLOB,
    created_at_ms INTEGER NOT NULL,
    UNIQUE (sender_user, sender_device, client_msg_id)
) STRICT;

CREATE TABLE inbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    payload_id INTEGER NOT NULL REFERENCES payloads(id)
) STRICT;
CREATE INDEX inbox_by_device ON inbox(user, device, seq);
CREATE INDEX inbox_by_payload ON inbox(payload_id);
