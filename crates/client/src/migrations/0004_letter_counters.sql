-- Letters counted per conversation, MLS epoch and sending device: this
-- device's own (to number what it sends) and every sender's highest seen
-- (to notice letters the server withheld).
CREATE TABLE letter_counters (
    conversation TEXT NOT NULL,
    epoch INTEGER NOT NULL,
    device TEXT NOT NULL,
    last INTEGER NOT NULL,
    PRIMARY KEY (conversation, epoch, device)
) STRICT;
