-- 0018 (issue 12, mail bridge attachments): the plaintext of attachments a
-- front end serves in ranges (the bridge's MIME parts), kept inside the
-- sealed home in 64 KiB pieces so that a part is read piece by piece and
-- never whole. Only a blob that passed every check (each chunk, its end,
-- the digest) is marked in `attachment_cached`; pieces of a download that
-- failed or was cut off are never read, and are cleared on the next try.
CREATE TABLE attachment_pieces (
    letter INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    piece INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (letter, idx, piece)
) STRICT;

CREATE TABLE attachment_cached (
    letter INTEGER NOT NULL,
    idx INTEGER NOT NULL,
    PRIMARY KEY (letter, idx)
) STRICT;
