-- Issue 8: identities and approvals, rollback-proof rejoins, held letters.

-- Each user's identity as this device pinned it the first time it proved
-- their entry, and what the person did about it: 'trusted' (pinned on
-- first use), 'verified' (safety codes compared), 'changed' (the identity
-- key changed since it was pinned: nothing goes to the user until they are
-- verified again).
CREATE TABLE contacts (
    user TEXT PRIMARY KEY,
    identity_key BLOB NOT NULL,
    generation INTEGER NOT NULL,
    state TEXT NOT NULL,
    updated_at_ms INTEGER NOT NULL
) STRICT;
DROP TABLE verified_contacts;

-- Every device of a proven directory entry, with the status its user's
-- signatures give it (approved, pending, revoked). Only approved keys are
-- used or believed.
DROP TABLE proven_keys;
CREATE TABLE directory_devices (
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    signature_key BLOB NOT NULL,
    status TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (user, device)
) STRICT;

-- The last list a verified lookup showed for each user (canonical
-- encoding): the next one must only have grown from it (a revocation is
-- never undone, a device never renumbered).
CREATE TABLE directory_lists (
    user TEXT PRIMARY KEY,
    list BLOB NOT NULL,
    epoch INTEGER NOT NULL
) STRICT;

-- Directory roots members sent that are newer than this device's ledger,
-- until an append-only proof from the server shows them (or fails to: a
-- split view).
CREATE TABLE member_roots (
    root BLOB PRIMARY KEY
) STRICT;

-- This user's devices whose revocation this device has already told about.
ALTER TABLE known_devices ADD COLUMN revocation_told INTEGER NOT NULL DEFAULT 0;

-- Root hashes of directory epochs this device holds (the ledger's, and
-- every epoch an append-only proof showed it): a root that a letter
-- carries is compared with them (split views are seen in band).
CREATE TABLE directory_roots (
    epoch INTEGER PRIMARY KEY,
    hash BLOB NOT NULL
) STRICT;

-- When this device last replaced its own leaf's keys in the conversation
-- (healing, I3), and whether it must do so at its next sync.
ALTER TABLE conversations ADD COLUMN updated_leaf_at_ms INTEGER NOT NULL DEFAULT 0;
ALTER TABLE conversations ADD COLUMN update_due INTEGER NOT NULL DEFAULT 0;
-- While diverged: the last epoch this device shared with the hub, and the
-- hub's side as this device verified it since (a public group state that
-- only commits signed by members moved on) with the devices those commits
-- added (comma-joined). A rejoin must land on it.
ALTER TABLE conversations ADD COLUMN shared_epoch INTEGER;
ALTER TABLE conversations ADD COLUMN shadow BLOB;
ALTER TABLE conversations ADD COLUMN shadow_added TEXT NOT NULL DEFAULT '';
-- Why the hub's side cannot be taken whatever comes next (a commit there
-- signed by a device this side removed), if so.
ALTER TABLE conversations ADD COLUMN hub_tainted TEXT;
-- Another copy of this device committed here (D3): this device does not
-- rejoin by itself, lest a stale copy keep reading.
ALTER TABLE conversations ADD COLUMN cloned INTEGER NOT NULL DEFAULT 0;
-- The users of the MLS roster (sorted, comma-joined), kept with the group:
-- `send --to` reuses a conversation only if they are exactly the sender
-- and the recipients. `direct`: made by `send --to`.
ALTER TABLE conversations ADD COLUMN members_key TEXT NOT NULL DEFAULT '';
ALTER TABLE conversations ADD COLUMN direct INTEGER NOT NULL DEFAULT 0;
UPDATE conversations SET direct = 1 WHERE direct_key IS NOT NULL;
DROP INDEX conversations_direct;
ALTER TABLE conversations DROP COLUMN direct_key;

-- The public group state of the last epochs this device left in each
-- conversation: where it follows the hub's side of a fork from.
CREATE TABLE epoch_snapshots (
    conversation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    state BLOB NOT NULL,
    PRIMARY KEY (conversation, epoch)
) STRICT;

-- The outbox now also holds letters waiting to be sealed (`ciphertext`
-- NULL): written in a conversation that is out of step, or to a person
-- whose identity changed. `exact_to`: a `send --to` letter, which may reach
-- only these users; with no conversation yet, it finds or makes one.
CREATE TABLE outbox_v2 (
    id INTEGER PRIMARY KEY,
    message_id TEXT NOT NULL UNIQUE,
    conversation TEXT,
    exact_to TEXT,
    plaintext BLOB NOT NULL,
    epoch INTEGER,
    ciphertext BLOB,
    seq INTEGER NOT NULL DEFAULT 0,
    held TEXT,
    created_at_ms INTEGER NOT NULL
) STRICT;
INSERT INTO outbox_v2 (message_id, conversation, plaintext, epoch, ciphertext, seq, created_at_ms)
    SELECT message_id, conversation, plaintext, epoch, ciphertext, seq, created_at_ms
    FROM outbox ORDER BY rowid;
DROP TABLE outbox;
ALTER TABLE outbox_v2 RENAME TO outbox;

-- When the key packages this device uploaded expire (seconds since the
-- Unix epoch): the earliest one-time package, and the last-resort one.
ALTER TABLE account ADD COLUMN one_time_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE account ADD COLUMN last_resort_until INTEGER NOT NULL DEFAULT 0;

-- A `send --to` letter is filed under the conversation it is sealed into,
-- found by its id.
CREATE INDEX letters_by_message ON letters (message_id);
