-- The commit (its SHA-256) with which this device left each epoch of a
-- conversation: the same commit again is a replay; another one for that
-- epoch means the server accepted two commits for one epoch (a fork).
CREATE TABLE epoch_commits (
    conversation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    commit_hash BLOB NOT NULL,
    PRIMARY KEY (conversation, epoch)
) STRICT;

-- This device's own rows: the highest letter number the server accepted
-- in that epoch, announced in its first letter of a later epoch so that
-- letters withheld at the end of an epoch are noticed too.
ALTER TABLE letter_counters ADD COLUMN accepted INTEGER NOT NULL DEFAULT 0;

-- The epoch at which this device joined: letters of earlier epochs were
-- never meant for it.
ALTER TABLE conversations ADD COLUMN joined_epoch INTEGER NOT NULL DEFAULT 0;

-- Set when this device may no longer follow the hub's group state (two
-- commits for one epoch, or a commit it could not process): the next sync
-- compares with the hub's GroupInfo and rejoins by external commit if they
-- differ.
ALTER TABLE conversations ADD COLUMN diverged INTEGER NOT NULL DEFAULT 0;

-- The epoch that had two commits, if this device saw a fork: its own
-- letters accepted after it may not have reached the other side, so they
-- are sent again once it rejoins (receivers keep one copy per message id).
ALTER TABLE conversations ADD COLUMN fork_epoch INTEGER;
ALTER TABLE letters ADD COLUMN sent_epoch INTEGER;

-- The number a sealed letter got in its epoch (0: not a letter), counted
-- once the server accepts it.
ALTER TABLE outbox ADD COLUMN seq INTEGER NOT NULL DEFAULT 0;
