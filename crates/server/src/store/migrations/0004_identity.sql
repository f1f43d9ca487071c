-- Identities and device approval (issue 8). What the key directory
-- publishes for a user is built from these rows alone; `status` is the
-- server's own view of what the signatures say (approved, pending or
-- revoked), written in the same transaction as every change.

-- The user's identity: the founding device's key (NULL: nobody enrolled
-- yet) and its generation (1, +1 per reset; 0 while there is none).
ALTER TABLE users ADD COLUMN identity_key BLOB;
ALTER TABLE users ADD COLUMN generation INTEGER NOT NULL DEFAULT 0;

-- number: order of enrolment among the user's devices, from 0.
-- generation: the identity generation the device enrolled under.
-- approval_by, approval_sig: the approving device and its signature.
-- revoked_at: the number the next device would have got when it was revoked;
-- revoked_by, revocation_sig: the revoking device and its signature (NULL:
-- the administrator or an identity reset); revoked_at_ms: when.
ALTER TABLE devices ADD COLUMN number INTEGER NOT NULL DEFAULT 0;
ALTER TABLE devices ADD COLUMN generation INTEGER NOT NULL DEFAULT 1;
ALTER TABLE devices ADD COLUMN status TEXT NOT NULL DEFAULT 'pending'
    CHECK (status IN ('approved', 'pending', 'revoked'));
ALTER TABLE devices ADD COLUMN approval_by TEXT;
ALTER TABLE devices ADD COLUMN approval_sig BLOB;
ALTER TABLE devices ADD COLUMN revoked_at INTEGER;
ALTER TABLE devices ADD COLUMN revoked_by TEXT;
ALTER TABLE devices ADD COLUMN revocation_sig BLOB;
ALTER TABLE devices ADD COLUMN revoked_at_ms INTEGER;

-- Devices enrolled before: numbered in enrolment order, the first founds
-- generation 1, the others wait for an approval.
UPDATE devices SET number = (
    SELECT COUNT(*) FROM devices AS older
    WHERE older.user = devices.user
      AND (older.enrolled_at_ms < devices.enrolled_at_ms
           OR (older.enrolled_at_ms = devices.enrolled_at_ms AND older.rowid < devices.rowid))
);
UPDATE devices SET status = CASE WHEN number = 0 THEN 'approved' ELSE 'pending' END;
UPDATE users SET
    identity_key = (SELECT signature_key FROM devices WHERE devices.user = users.user AND number = 0),
    generation = 1
WHERE EXISTS (SELECT 1 FROM devices WHERE devices.user = users.user);

CREATE UNIQUE INDEX devices_by_number ON devices(user, number);
-- What the running server polls to learn of revocations made by
-- `valised admin revoke` in another process.
CREATE INDEX devices_revoked ON devices(user, device) WHERE status = 'revoked';

-- A reset invite: the device enrolling with it founds a new identity
-- generation and every older device of the user is revoked.
ALTER TABLE invites ADD COLUMN reset INTEGER NOT NULL DEFAULT 0;

-- When the key package expires (seconds since the Unix epoch; NULL: stored
-- before lifetimes were kept). Claims never hand out an expired one.
ALTER TABLE key_packages ADD COLUMN not_after INTEGER;
