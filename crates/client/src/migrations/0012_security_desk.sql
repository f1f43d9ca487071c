-- Issue 10: the organisation's security desk, to which this device reports
-- every alert it raises, and, on the desk's own devices, the reports.

-- One row. `pinned`: the desk reports go to (learnt at enrolment, or on
-- first sight: trust on first use; NULL: none known). `offered`: what the
-- server names now when it differs from `pinned` (already alerted; NULL
-- with `changed` = 1: the server names no desk any more). `printed`: the
-- last report `alerts --desk --follow` wrote out (a restart resumes after it).
CREATE TABLE security_desk (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pinned TEXT,
    changed INTEGER NOT NULL DEFAULT 0,
    offered TEXT,
    printed INTEGER NOT NULL DEFAULT 0
) STRICT;
INSERT INTO security_desk (id) VALUES (1);

-- The reports budget per alert kind: at most a few reports per kind and
-- hour (a flood, or a loop through the desk conversation itself, stays
-- bounded); the alerts past it are counted and the count travels with the
-- next report of the kind.
CREATE TABLE desk_budget (
    kind TEXT PRIMARY KEY,
    window_start_ms INTEGER NOT NULL,
    reported INTEGER NOT NULL DEFAULT 0,
    suppressed INTEGER NOT NULL DEFAULT 0
) STRICT;

-- Reports received (on the desk's devices): who sent them is the MLS
-- sender, not anything in the report. Stored once per (sender, id).
CREATE TABLE desk_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    report_id TEXT NOT NULL,
    sender_user TEXT NOT NULL,
    sender_device TEXT NOT NULL,
    via TEXT NOT NULL,
    received_at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    at_ms INTEGER NOT NULL,
    conversation TEXT,
    detail TEXT NOT NULL,
    evidence_sha256 TEXT NOT NULL DEFAULT '[]',
    suppressed INTEGER NOT NULL DEFAULT 0,
    UNIQUE (sender_user, report_id)
) STRICT;

-- Reports this device sent that the server accepted, as written, with the
-- epoch they were accepted in: a server restored from an older copy (or a
-- fork) may have lost them, and they are sealed again like letters.
CREATE TABLE sent_reports (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    conversation TEXT NOT NULL,
    report_id TEXT NOT NULL,
    plaintext BLOB NOT NULL,
    sent_epoch INTEGER NOT NULL,
    UNIQUE (conversation, report_id)
) STRICT;
