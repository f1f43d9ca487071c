-- Issue 11: accreditation. (Numbered 0010: 0009 is the attachments'.)
-- `accreditation_authority`: the security officer's public key (hex),
-- whose attestations `valised admin publish-attestation` accepts and
-- which devices pin at enrolment. One row.
CREATE TABLE accreditation_authority (
    only INTEGER PRIMARY KEY CHECK (only = 1),
    key TEXT NOT NULL,
    set_at_ms INTEGER NOT NULL
) STRICT;

-- The attestations published in each user's directory entry, as signed
-- (COSE_Sign1 bytes): the server cannot read more of them than anyone
-- who looks the user up.
CREATE TABLE attestations (
    user TEXT NOT NULL,
    attestation BLOB NOT NULL,
    published_at_ms INTEGER NOT NULL,
    PRIMARY KEY (user, attestation)
) STRICT;
