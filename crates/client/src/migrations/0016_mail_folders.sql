-- The mail bridge (valise-bridge): how ordinary mail clients see this home.

-- The bridge's password, as an Argon2id PHC string (never the password),
-- and the private key of its loopback TLS certificate (sealed here; the
-- certificate itself is public, in bridge/cert.pem).
CREATE TABLE bridge_account (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    password_hash TEXT NOT NULL,
    tls_key_pem TEXT NOT NULL
) STRICT;

-- One IMAP folder: `key` is INBOX, Sent, Drafts, Archive, Trash or
-- `conv:<conversation id>`. UIDVALIDITY is drawn once and never changes;
-- UIDs are given in letter order up to `indexed_through` (a letter id),
-- so a letter's UID in a folder is given once, never recomputed.
CREATE TABLE mail_folders (
    key TEXT PRIMARY KEY,
    uid_validity INTEGER NOT NULL CHECK (uid_validity > 0),
    uid_next INTEGER NOT NULL DEFAULT 1,
    indexed_through INTEGER NOT NULL DEFAULT 0
) STRICT;

-- A letter in a folder, with its UID there and its IMAP flags.
CREATE TABLE mail_uids (
    folder TEXT NOT NULL REFERENCES mail_folders (key),
    uid INTEGER NOT NULL,
    letter INTEGER NOT NULL REFERENCES letters (id),
    seen INTEGER NOT NULL DEFAULT 0,
    flagged INTEGER NOT NULL DEFAULT 0,
    answered INTEGER NOT NULL DEFAULT 0,
    deleted INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (folder, uid),
    UNIQUE (folder, letter)
) STRICT;

-- A mail client's In-Reply-To names a letter by its message id.
CREATE INDEX letters_message_id ON letters (message_id);

-- Mail a client submitted over SMTP, by the Message-ID the client gave it:
-- the client's copy APPENDed to Sent afterwards is that letter, not a new one.
CREATE TABLE mail_submitted (
    client_message_id TEXT PRIMARY KEY,
    letter INTEGER NOT NULL REFERENCES letters (id)
) STRICT;
