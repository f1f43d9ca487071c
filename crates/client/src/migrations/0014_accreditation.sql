-- Issue 11: the accreditation authority key (hex) this device pinned at
-- enrolment (or on first sight, if the server named none then), under
-- which alone it verifies attestations. `offered`: another key the server
-- names now (alerted once; `changed` = 1, NULL offered: it names none).
-- (Numbered 0014: 0013 is the attachments'.)
CREATE TABLE accreditation_authority (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    pinned TEXT,
    changed INTEGER NOT NULL DEFAULT 0,
    offered TEXT
) STRICT;
INSERT INTO accreditation_authority (id) VALUES (1);
