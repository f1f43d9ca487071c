-- Server alerts (issue 10, crate::rules): the audit entries that are
-- alerts (`alert_raised`), by number, for `valised alerts`. The alert
-- itself is the entry in audit_entries, so it is covered by the log's
-- checkpoints: deleting or editing one fails `valised audit verify`.
-- (Numbered 0008 beside the security desk's 0007.)
CREATE TABLE alerts (
    idx INTEGER PRIMARY KEY
) STRICT;
