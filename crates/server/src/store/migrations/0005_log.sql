-- Delivery v2 (issue 9): one log row per accepted message instead of one
-- inbox row per recipient. Who reads a row follows from membership
-- intervals; each device has one cursor. The hot tables use integer ids,
-- no AUTOINCREMENT and no foreign keys.

-- Integer ids of devices and conversations, never reused.
CREATE TABLE device_nums (
    num INTEGER PRIMARY KEY,
    user TEXT NOT NULL,
    device TEXT NOT NULL,
    UNIQUE (user, device)
) STRICT;
INSERT INTO device_nums (user, device) SELECT user, device FROM devices ORDER BY user, device;

ALTER TABLE conversations ADD COLUMN num INTEGER;
UPDATE conversations SET num = rowid;
CREATE UNIQUE INDEX conversations_by_num ON conversations(num);

-- seq: assigned by the one writer in commit order, strictly increasing and
-- never reused (log_head keeps the last one even when GC emptied the log).
-- kind: 1 commit, 2 welcome, 3 application. targeted: only the devices in
-- `targets` read the row (Welcomes); otherwise the conversation's members
-- at that position do. chain: the first 16 bytes of SHA-256(previous
-- row's chain || this row), what a cursor carries so that a server
-- restored from an older copy of its data knows it is not the one that
-- handed the cursor out.
CREATE TABLE log (
    seq INTEGER PRIMARY KEY,
    conv INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    sender INTEGER NOT NULL,
    targeted INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    ratchet_tree BLOB,
    at_ms INTEGER NOT NULL,
    chain BLOB NOT NULL
) STRICT;
CREATE INDEX log_by_conv ON log(conv, targeted, seq);
CREATE INDEX log_targeted ON log(seq) WHERE targeted = 1;

CREATE TABLE log_head (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    seq INTEGER NOT NULL,
    chain BLOB NOT NULL
) STRICT;

CREATE TABLE targets (
    device INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    PRIMARY KEY (device, seq)
) STRICT, WITHOUT ROWID;

-- A device reads the conversation's untargeted rows with
-- from_seq < seq <= to_seq (to_seq NULL while it is a member; else the
-- commit that removed it, which it reads).
CREATE TABLE memberships (
    device INTEGER NOT NULL,
    conv INTEGER NOT NULL,
    from_seq INTEGER NOT NULL,
    to_seq INTEGER,
    PRIMARY KEY (device, conv, from_seq)
) STRICT, WITHOUT ROWID;
CREATE INDEX memberships_by_conv ON memberships(conv, device);

-- What each device acknowledged: everything up to `seq` (with its chain).
CREATE TABLE cursors (
    device INTEGER PRIMARY KEY,
    seq INTEGER NOT NULL,
    chain BLOB NOT NULL
) STRICT;

-- Client message ids accepted, so that a retry is a duplicate even after
-- the row itself was collected; forgotten after a while (`purge`, which
-- scans: an index on at_ms would cost every letter a fourth B-tree).
CREATE TABLE sent_ids (
    sender INTEGER NOT NULL,
    msg_id BLOB NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (sender, msg_id)
) STRICT, WITHOUT ROWID;

-- Bytes of the log rows each account's devices sent that are still kept:
-- what the per-account quota counts.
CREATE TABLE usage (
    user TEXT PRIMARY KEY,
    bytes INTEGER NOT NULL
) STRICT;

-- What was queued in the per-recipient inbox moves over as targeted rows
-- (exactly the devices that had not read them), members as open
-- intervals, accepted message ids as they were.
INSERT INTO log (seq, conv, kind, sender, targeted, bytes, ratchet_tree, at_ms, chain)
SELECT p.id, c.num, p.kind, d.num, 1, p.bytes, p.ratchet_tree, p.created_at_ms, X''
FROM payloads p
JOIN conversations c ON c.id = p.conversation
JOIN device_nums d ON d.user = p.sender_user AND d.device = p.sender_device
WHERE EXISTS (SELECT 1 FROM inbox i WHERE i.payload_id = p.id);
INSERT INTO targets (device, seq)
SELECT d.num, i.payload_id FROM inbox i
JOIN device_nums d ON d.user = i.user AND d.device = i.device
WHERE i.payload_id IN (SELECT seq FROM log);
INSERT INTO log_head (only, seq, chain)
VALUES (1, (SELECT coalesce(max(id), 0) FROM payloads), X'');
INSERT INTO memberships (device, conv, from_seq, to_seq)
SELECT d.num, c.num, (SELECT seq FROM log_head), NULL
FROM members m
JOIN conversations c ON c.id = m.conversation
JOIN device_nums d ON d.user = m.user AND d.device = m.device;
INSERT INTO sent_ids (sender, msg_id, seq, at_ms)
SELECT d.num, p.client_msg_id, p.id, p.created_at_ms FROM payloads p
JOIN device_nums d ON d.user = p.sender_user AND d.device = p.sender_device
WHERE p.client_msg_id IS NOT NULL;
INSERT INTO usage (user, bytes)
SELECT d.user, sum(length(l.bytes)) FROM log l JOIN device_nums d ON d.num = l.sender
GROUP BY d.user;

DROP TABLE inbox;
DROP TABLE payloads;
