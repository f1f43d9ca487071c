-- Issue 11: attachments.

-- The attachments of every letter kept here, sent or received, in order:
-- each reference as the letter carried it (CBOR: blob id, key, digest,
-- sizes, name, media type), sealed in this database like the letter.
CREATE TABLE letter_attachments (
    letter INTEGER NOT NULL REFERENCES letters (id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    ref BLOB NOT NULL,
    PRIMARY KEY (letter, idx)
) STRICT;

-- Letters written with attachments still uploading: the letter as
-- written (its payload encoding, without attachments) and where it goes
-- (`conversation`, or for `send --to` `exact_to`, as in the outbox). A
-- letter leaves here for the outbox, in one transaction, once all its
-- uploads are complete.
CREATE TABLE drafts (
    message_id TEXT PRIMARY KEY NOT NULL,
    conversation TEXT,
    exact_to TEXT,
    plaintext BLOB NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;

-- One attachment's upload. The source is known by path, size and mtime; a
-- changed source starts over with a new key and a new blob (never a key
-- and position used twice). `sent_hash` is BLAKE3 of the blob's first
-- `durable` bytes as sent: a resumed upload seals the file again and must
-- come to the same bytes before it sends more. `pending_end` and
-- `pending_hash` (BLAKE3 of the blob's first `pending_end` bytes) are
-- written before a part goes: the server may hold it though no answer was
-- noted, so a resumed upload checks through the larger of `durable` and
-- `pending_end`. `digest` is set when the whole blob is durable.
CREATE TABLE uploads (
    message_id TEXT NOT NULL REFERENCES drafts (message_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    path TEXT NOT NULL,
    name TEXT NOT NULL,
    media_type TEXT NOT NULL,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    key BLOB NOT NULL,
    nonce_prefix BLOB NOT NULL,
    blob TEXT,
    durable INTEGER NOT NULL DEFAULT 0,
    sent_hash BLOB,
    pending_end INTEGER NOT NULL DEFAULT 0,
    pending_hash BLOB,
    digest BLOB,
    PRIMARY KEY (message_id, idx)
) STRICT;
