-- A conversation's mail folder gives UIDs to its letters after the last one
-- indexed: a range of this index, not every letter of the conversation.
CREATE INDEX letters_by_conversation ON letters (conversation, id);

-- A mail client's In-Reply-To is found by `letters_by_message` (0006);
-- 0016's index on the same column only cost writes.
DROP INDEX letters_message_id;
