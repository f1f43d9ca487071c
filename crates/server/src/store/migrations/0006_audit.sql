-- The audit log (issue 10, I7): a Merkle tree (RFC 9162) over the audit
-- entries, with signed checkpoints. Appended by the server's one audit
-- writer (crate::audit); read by the public /v1/audit routes and by
-- `valised audit verify`.

-- The entries, the tree's leaves: canonical JSON (valise_proto::audit).
-- idx is contiguous from 0; a gap, an edit or a swap is what an auditor
-- finds by recomputing the tree.
CREATE TABLE audit_entries (
    idx INTEGER PRIMARY KEY,
    bytes BLOB NOT NULL
) STRICT;

-- The hash of every *complete* subtree: 2^level leaves from leaf
-- idx << level. Complete subtrees never change, so each is written once
-- when its last leaf arrives, and any inclusion or consistency proof reads
-- O(log n) of them (valise_proto::tlog::inclusion_plan, consistency_plan).
CREATE TABLE audit_nodes (
    level INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    hash BLOB NOT NULL,
    PRIMARY KEY (level, idx)
) STRICT, WITHOUT ROWID;

-- Signed checkpoints (C2SP signed notes), one per size at most. The key
-- that signs them is a file (D/keys/audit.key), never a row.
CREATE TABLE audit_checkpoints (
    size INTEGER PRIMARY KEY,
    note TEXT NOT NULL,
    signed_at_ms INTEGER NOT NULL
) STRICT;

-- Events recorded by another process (`valised admin`) for the running
-- server's audit writer to append (it numbers them), or the next one to start.
CREATE TABLE audit_queue (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    bytes BLOB NOT NULL
) STRICT;

-- The entries each account must be shown (valise_proto::audit::Entry::shown_to:
-- the administrator's actions on it), for GET /v1/audit/account.
CREATE TABLE audit_account (
    user TEXT NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (user, idx)
) STRICT, WITHOUT ROWID;
