-- 0020 (issue 12, mail bridge SMTP attachments): files a front end hands
-- the engine in memory (a mail client's MIME parts), kept sealed here from
-- the moment the letter is written until its uploads are done, so that an
-- interrupted upload resumes without any plaintext outside the home. Their
-- `uploads` row has an empty path.
CREATE TABLE upload_sources (
    message_id TEXT NOT NULL REFERENCES drafts (message_id) ON DELETE CASCADE,
    idx INTEGER NOT NULL,
    bytes BLOB NOT NULL,
    PRIMARY KEY (message_id, idx)
) STRICT;
