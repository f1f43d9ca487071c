-- The key directory as this device knows it: the pinned key that signs its
-- roots, and the newest root accepted (a RootLedger, JSON).
CREATE TABLE directory (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    key BLOB NOT NULL,
    ledger TEXT NOT NULL
) STRICT;

-- Device keys proven by a verified lookup: a peer's key is used, and its
-- letters shown, only if it is here.
CREATE TABLE proven_keys (
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    signature_key BLOB NOT NULL,
    epoch INTEGER NOT NULL,
    PRIMARY KEY (user, device, signature_key)
) STRICT;

-- This user's devices (and keys) seen in the directory's history; a new
-- one raises an alert once.
CREATE TABLE known_devices (
    device TEXT NOT NULL,
    signature_key BLOB NOT NULL,
    PRIMARY KEY (device, signature_key)
) STRICT;

-- Safety codes the user compared out of band and confirmed.
CREATE TABLE verified_contacts (
    user TEXT PRIMARY KEY,
    code TEXT NOT NULL,
    verified_at_ms INTEGER NOT NULL
) STRICT;
