-- Issue 11: conversation ceilings.
-- `policy`: the policy record (canonical CBOR, valise_proto::policy) this
-- device holds for the conversation: its own at creation, or the first a
-- member sent whose hash the group context held. NULL: no ceiling known.
-- `degraded`: why marked letters are refused there until it is resolved
-- (`ceiling`: the group's policy hash changed; `member`: a member is not
-- accredited for the ceiling, until removed); NULL: not degraded.
ALTER TABLE conversations ADD COLUMN policy BLOB;
ALTER TABLE conversations ADD COLUMN degraded TEXT;
