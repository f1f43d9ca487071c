-- Key directory (akd) tables. Prefixed so they can share the server's
-- database file; versioned in directory_schema, not PRAGMA user_version,
-- which belongs to the server's own migrations.

-- Opaque akd records: the Azks summary (kind 1) and tree nodes (kind 2),
-- keyed by akd's binary id.
CREATE TABLE directory_records (
    kind  INTEGER NOT NULL,
    key   BLOB    NOT NULL,
    value BLOB    NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;

-- Every published value of every user (label = user id bytes).
CREATE TABLE directory_user_states (
    username  BLOB    NOT NULL,
    epoch     INTEGER NOT NULL,
    version   INTEGER NOT NULL,
    label_len INTEGER NOT NULL,
    label_val BLOB    NOT NULL,
    value     BLOB    NOT NULL,
    PRIMARY KEY (username, epoch)
) WITHOUT ROWID;

CREATE INDEX directory_user_states_version ON directory_user_states (username, version);

-- Named secrets: the VRF key, optionally the root signing key.
CREATE TABLE directory_secrets (
    name  TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

-- Root hash of every epoch, for append-only proofs over several epochs.
CREATE TABLE directory_epoch_roots (
    epoch     INTEGER PRIMARY KEY,
    root_hash BLOB NOT NULL
);
