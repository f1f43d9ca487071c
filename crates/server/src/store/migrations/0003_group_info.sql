-- The latest signed GroupInfo of each conversation (with its external
-- public key): what a member that lost track of the group (a fork, a
-- commit it could not process) rejoins from by external commit.
ALTER TABLE conversations ADD COLUMN group_info BLOB NOT NULL DEFAULT X'';
