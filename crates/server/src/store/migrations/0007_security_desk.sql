-- Issue 10: the organisation's security desk, the user every device sends
-- its alert reports to (`valised admin set security-desk USER`). One row
-- at most; devices learn it at enrolment and from `GET /v1/security-desk`,
-- and pin the first one they learn.
CREATE TABLE security_desk (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    user TEXT NOT NULL,
    set_at_ms INTEGER NOT NULL
) STRICT;
