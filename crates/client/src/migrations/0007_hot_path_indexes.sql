-- Issue 9: nothing a device runs for each letter it seals, sends or opens
-- reads a table that grows with history (home::tests::hot_statements_never_scan).

-- `Letter::prev`: this device's last earlier epoch with letters the server
-- accepted, without walking every earlier epoch's counters of every sender.
CREATE INDEX letter_counters_accepted ON letter_counters (conversation, device, epoch)
    WHERE accepted > 0;

-- Asked before every letter is sealed: did any correspondent's identity change?
CREATE INDEX contacts_by_state ON contacts (state);
