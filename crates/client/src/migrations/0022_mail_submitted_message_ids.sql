-- 0022 (red team, issue 12 SMTP retries): a mail submitted over SMTP is
-- noted by the letter id (message id) the bridge gives it, before the
-- engine writes anything, not by the letter row written afterwards. A mail
-- whose files' upload was cut short has no letter row yet (it waits as a
-- draft), so it went unnoted, and each retry of the mail client after the
-- 451 became another draft and another copy of the letter.
CREATE TABLE mail_submitted_ids (
    client_message_id TEXT PRIMARY KEY,
    message_id TEXT NOT NULL
) STRICT;

INSERT INTO mail_submitted_ids (client_message_id, message_id)
    SELECT s.client_message_id, l.message_id
    FROM mail_submitted s JOIN letters l ON l.id = s.letter;

DROP TABLE mail_submitted;
ALTER TABLE mail_submitted_ids RENAME TO mail_submitted;
