-- Attachment blobs (issue 11): what the server knows of each, never a name
-- or content. The bytes are files under the data directory's `blobs/`
-- (crate::blobs), not rows. `length` is declared at creation and counts
-- against the owner's blob quota from then on; `durable` is how many bytes
-- are fsynced (an upload resumes there); `parts` counts the parts
-- received, so that a part sent twice shows.
CREATE TABLE blobs (
    id BLOB PRIMARY KEY NOT NULL,
    owner TEXT NOT NULL,
    length INTEGER NOT NULL,
    durable INTEGER NOT NULL DEFAULT 0,
    parts INTEGER NOT NULL DEFAULT 0,
    created_at_ms INTEGER NOT NULL
) STRICT;
CREATE INDEX blobs_by_owner ON blobs (owner);
CREATE INDEX blobs_incomplete ON blobs (created_at_ms) WHERE durable < length;
