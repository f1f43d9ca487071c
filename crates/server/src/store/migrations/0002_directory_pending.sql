-- Users whose device list must enter the key directory's next epoch. A row
-- is written in the same transaction as the change (enrolment), and deleted
-- once an epoch containing it is published; rows left by a crash are
-- published at the next start.
CREATE TABLE directory_pending (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    user TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
) STRICT;
