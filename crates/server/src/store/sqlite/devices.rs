//! Users, identities and devices on SQLite: enrolment (founding, pending or
//! reset), approvals and revocations, each in one transaction with the
//! queue entry that publishes the user's new list.

use super::*;
use rusqlite::Row;
use valise_directory::SignatureKey;

const DEVICE_COLUMNS: &str = "device, signature_key, enrolled_at_ms, number, generation, status, \
     approval_by, approval_sig, revoked_at, revoked_by, revocation_sig, revoked_at_ms";

/// Raw columns of a device row, converted after the row is released.
struct DeviceRow {
    device: String,
    signature_key: Vec<u8>,
    enrolled_at_ms: i64,
    number: i64,
    generation: i64,
    status: String,
    approval_by: Option<String>,
    approval_sig: Option<Vec<u8>>,
    revoked_at: Option<i64>,
    revoked_by: Option<String>,
    revocation_sig: Option<Vec<u8>>,
    revoked_at_ms: Option<i64>,
}

fn device_row(r: &Row<'_>) -> rusqlite::Result<DeviceRow> {
    Ok(DeviceRow {
        device: r.get(0)?,
        signature_key: r.get(1)?,
        enrolled_at_ms: r.get(2)?,
        number: r.get(3)?,
        generation: r.get(4)?,
        status: r.get(5)?,
        approval_by: r.get(6)?,
        approval_sig: r.get(7)?,
        revoked_at: r.get(8)?,
        revoked_by: r.get(9)?,
        revocation_sig: r.get(10)?,
        revoked_at_ms: r.get(11)?,
    })
}

fn to_generation(v: i64) -> Result<u32, StoreError> {
    u32::try_from(v).map_err(|_| StoreError::Corrupt(format!("generation {v}")))
}

fn record(row: DeviceRow) -> Result<DeviceRecord, StoreError> {
    let approval = match (row.approval_by, row.approval_sig) {
        (Some(by), Some(sig)) => Some(Approval {
            by: parse_device(&by)?,
            signature: SignatureKey(sig),
        }),
        (None, None) => None,
        _ => return Err(StoreError::Corrupt("half an approval".into())),
    };
    let revocation = row
        .revoked_at
        .map(|at| {
            Ok::<_, StoreError>(Revocation {
                at: to_u64(at)?,
                by: row.revoked_by.as_deref().map(parse_device).transpose()?,
                signature: row.revocation_sig.map(SignatureKey),
            })
        })
        .transpose()?;
    Ok(DeviceRecord {
        device: parse_device(&row.device)?,
        signature_key: row.signature_key,
        enrolled_at_ms: row.enrolled_at_ms,
        number: to_u64(row.number)?,
        generation: to_generation(row.generation)?,
        status: Status::parse(&row.status)
            .ok_or_else(|| StoreError::Corrupt(format!("device status {:?}", row.status)))?,
        approval,
        revocation,
        revoked_at_ms: row.revoked_at_ms,
    })
}

pub(super) fn device(
    conn: &Connection,
    d: &DeviceAddress,
) -> Result<Option<DeviceRecord>, StoreError> {
    let row = conn
        .prepare_cached(&format!(
            "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 AND device = ?2"
        ))?
        .query_row(params![d.user.as_str(), d.device.to_string()], device_row)
        .optional()?;
    row.map(record).transpose()
}

pub(super) fn user(conn: &Connection, user: &UserId) -> Result<UserRecord, StoreError> {
    let row: Option<(Option<Vec<u8>>, i64)> = conn
        .prepare_cached("SELECT identity_key, generation FROM users WHERE user = ?1")?
        .query_row(params![user.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let (key, generation) = row.ok_or(StoreError::NotFound)?;
    let key = key.ok_or_else(|| StoreError::Corrupt(format!("{user} has no identity")))?;
    let mut stmt = conn.prepare_cached(&format!(
        "SELECT {DEVICE_COLUMNS} FROM devices WHERE user = ?1 ORDER BY number"
    ))?;
    let rows = stmt
        .query_map(params![user.as_str()], device_row)?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    Ok(UserRecord {
        user: user.clone(),
        identity: Identity {
            key: SignatureKey(key),
            generation: to_generation(generation)?,
        },
        devices: rows.into_iter().map(record).collect::<Result<_, _>>()?,
        attestations: conn
            .prepare_cached(
                "SELECT attestation FROM attestations WHERE user = ?1 ORDER BY attestation",
            )?
            .query_map(params![user.as_str()], |r| r.get(0))?
            .collect::<rusqlite::Result<_>>()?,
    })
}

/// The number `user`'s next device gets.
fn next_number(tx: &Connection, user: &UserId) -> Result<u64, StoreError> {
    let n: i64 = tx
        .prepare_cached("SELECT COALESCE(MAX(number) + 1, 0) FROM devices WHERE user = ?1")?
        .query_row(params![user.as_str()], |r| r.get(0))?;
    to_u64(n)
}

fn is_approved(tx: &Connection, user: &UserId, device: &DeviceId) -> Result<bool, StoreError> {
    Ok(tx
        .prepare_cached(
            "SELECT 1 FROM devices WHERE user = ?1 AND device = ?2 AND status = 'approved'",
        )?
        .query_row(params![user.as_str(), device.to_string()], |_| Ok(()))
        .optional()?
        .is_some())
}

pub(super) fn check_invite(
    conn: &Connection,
    code_hash: &[u8; 32],
    user: &UserId,
    now_ms: i64,
) -> Result<bool, StoreError> {
    let reset: Option<i64> = conn
        .prepare_cached(
            "SELECT reset FROM invites WHERE code_hash = ?1 AND user = ?2 \
             AND used_at_ms IS NULL AND expires_at_ms > ?3",
        )?
        .query_row(params![&code_hash[..], user.as_str(), now_ms], |r| r.get(0))
        .optional()?;
    reset.map(|r| r != 0).ok_or(StoreError::InvalidInvite)
}

pub(super) fn enroll(tx: &Transaction<'_>, e: &Enrollment) -> Result<Enrolled, StoreError> {
    let user = e.device.user.as_str();
    let device = e.device.device.to_string();
    let reset: Option<i64> = tx
        .query_row(
            "UPDATE invites SET used_at_ms = ?1 WHERE code_hash = ?2 AND user = ?3 \
             AND used_at_ms IS NULL AND expires_at_ms > ?1 RETURNING reset",
            params![e.now_ms, &e.code_hash[..], user],
            |r| r.get(0),
        )
        .optional()?;
    let reset = reset.ok_or(StoreError::InvalidInvite)? != 0;
    tx.execute(
        "INSERT OR IGNORE INTO users (user, created_at_ms) VALUES (?1, ?2)",
        params![user, e.now_ms],
    )?;
    let (identity, generation): (Option<Vec<u8>>, i64) = tx.query_row(
        "SELECT identity_key, generation FROM users WHERE user = ?1",
        params![user],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )?;
    let number = next_number(tx, &e.device.user)?;
    let founds = identity.is_none() || reset;
    let generation = to_generation(generation)?;
    let (generation, status) = if founds {
        (generation.saturating_add(1), Status::Approved)
    } else {
        (generation, Status::Pending)
    };
    if founds {
        if reset {
            // Every older device counts as revoked (unsigned, at the new
            // device's number); those revoked earlier keep their revocation.
            tx.execute(
                "UPDATE devices SET status = 'revoked', revoked_at = COALESCE(revoked_at, ?2), \
                 revoked_at_ms = COALESCE(revoked_at_ms, ?3) WHERE user = ?1",
                params![user, to_i64(number)?, e.now_ms],
            )?;
            tx.execute("DELETE FROM tokens WHERE user = ?1", params![user])?;
            tx.execute("DELETE FROM key_packages WHERE user = ?1", params![user])?;
            super::log::forget_readers(tx, user, None)?;
        }
        tx.execute(
            "UPDATE users SET identity_key = ?2, generation = ?3 WHERE user = ?1",
            params![user, e.signature_key, generation],
        )?;
    }
    tx.execute(
        "INSERT INTO devices (user, device, signature_key, enrolled_at_ms, number, generation, \
         status) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![
            user,
            device,
            e.signature_key,
            e.now_ms,
            to_i64(number)?,
            generation,
            status.as_str()
        ],
    )
    .map_err(|err| {
        if is_unique_violation(&err) {
            StoreError::AlreadyExists
        } else {
            err.into()
        }
    })?;
    super::key_packages::insert(tx, &e.device, &e.key_packages, false)?;
    super::key_packages::insert(tx, &e.device, std::slice::from_ref(&e.last_resort), true)?;
    Ok(Enrolled {
        seq: mark_pending(tx, &e.device.user, e.now_ms)?,
        number,
        generation,
        status,
    })
}

pub(super) fn approve(tx: &Transaction<'_>, a: &NewApproval) -> Result<u64, StoreError> {
    let changed = tx.execute(
        "UPDATE devices SET status = 'approved', approval_by = ?3, approval_sig = ?4 \
         WHERE user = ?1 AND device = ?2 AND number = ?5 AND status = 'pending' \
         AND EXISTS (SELECT 1 FROM devices AS approver WHERE approver.user = ?1 \
                     AND approver.device = ?3 AND approver.status = 'approved')",
        params![
            a.device.user.as_str(),
            a.device.device.to_string(),
            a.by.to_string(),
            a.signature,
            to_i64(a.number)?
        ],
    )?;
    if changed != 1 {
        return Err(StoreError::Changed(format!(
            "device {} is no longer pending as number {}, or {} is no longer approved",
            a.device, a.number, a.by
        )));
    }
    mark_pending(tx, &a.device.user, a.now_ms)
}

pub(super) fn revoke(tx: &Transaction<'_>, r: &NewRevocation) -> Result<u64, StoreError> {
    let target = device(tx, &r.device)?.ok_or(StoreError::NotFound)?;
    if target.status == Status::Revoked {
        return Err(StoreError::Changed(format!(
            "device {} is revoked already",
            r.device
        )));
    }
    let next = next_number(tx, &r.device.user)?;
    let at = r.at.unwrap_or(next);
    if at != next {
        return Err(StoreError::Changed(format!(
            "the next device number is {next}, not {at}"
        )));
    }
    if let Some((by, _)) = &r.by
        && !is_approved(tx, &r.device.user, by)?
    {
        return Err(StoreError::Changed(format!("{by} is not approved")));
    }
    let user = r.device.user.as_str();
    let device = r.device.device.to_string();
    tx.execute(
        "UPDATE devices SET status = 'revoked', revoked_at = ?3, revoked_by = ?4, \
         revocation_sig = ?5, revoked_at_ms = ?6 WHERE user = ?1 AND device = ?2",
        params![
            user,
            device,
            to_i64(at)?,
            r.by.as_ref().map(|(by, _)| by.to_string()),
            r.by.as_ref().map(|(_, sig)| sig.as_slice()),
            r.now_ms
        ],
    )?;
    tx.execute(
        "DELETE FROM tokens WHERE user = ?1 AND device = ?2",
        params![user, device],
    )?;
    tx.execute(
        "DELETE FROM key_packages WHERE user = ?1 AND device = ?2",
        params![user, device],
    )?;
    super::log::forget_readers(tx, user, Some(&device))?;
    mark_pending(tx, &r.device.user, r.now_ms)
}

pub(super) fn revoked_count(conn: &Connection) -> Result<u64, StoreError> {
    let n: i64 = conn
        .prepare_cached("SELECT COUNT(*) FROM devices WHERE status = 'revoked'")?
        .query_row([], |r| r.get(0))?;
    to_u64(n)
}

pub(super) fn revoked_devices(conn: &Connection) -> Result<Vec<DeviceAddress>, StoreError> {
    let mut stmt =
        conn.prepare_cached("SELECT user, device FROM devices WHERE status = 'revoked'")?;
    let rows = stmt
        .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
        .collect::<rusqlite::Result<Vec<_>>>()?;
    rows.iter().map(|(u, d)| parse_addr(u, d)).collect()
}
