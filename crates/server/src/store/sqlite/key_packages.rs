//! Key packages on SQLite: stock kept with each package's expiry, claims
//! that hand out only approved devices' packages that are still valid.

use super::*;

/// Inserts packages of one kind (one-time or last-resort) for `device`.
pub(super) fn insert(
    tx: &Connection,
    device: &DeviceAddress,
    packages: &[NewKeyPackage],
    last_resort: bool,
) -> Result<(), StoreError> {
    let mut stmt = tx.prepare_cached(
        "INSERT INTO key_packages (user, device, bytes, last_resort, not_after) \
         VALUES (?1, ?2, ?3, ?4, ?5)",
    )?;
    for kp in packages {
        stmt.execute(params![
            device.user.as_str(),
            device.device.to_string(),
            kp.bytes,
            last_resort,
            to_i64(kp.not_after)?
        ])?;
    }
    Ok(())
}

pub(super) fn add(
    tx: &Transaction<'_>,
    device: &DeviceAddress,
    one_time: &[NewKeyPackage],
    last_resort: Option<&NewKeyPackage>,
    replace: bool,
) -> Result<u64, StoreError> {
    let user = device.user.as_str();
    let dev = device.device.to_string();
    if replace {
        tx.execute(
            "DELETE FROM key_packages WHERE user = ?1 AND device = ?2 AND last_resort = 0",
            params![user, dev],
        )?;
    }
    insert(tx, device, one_time, false)?;
    if let Some(lr) = last_resort {
        tx.execute(
            "DELETE FROM key_packages WHERE user = ?1 AND device = ?2 AND last_resort = 1",
            params![user, dev],
        )?;
        insert(tx, device, std::slice::from_ref(lr), true)?;
    }
    let n: i64 = tx.query_row(
        "SELECT COUNT(*) FROM key_packages WHERE user = ?1 AND device = ?2 AND last_resort = 0",
        params![user, dev],
        |r| r.get(0),
    )?;
    to_u64(n)
}

pub(super) fn claim(
    tx: &Transaction<'_>,
    user: &UserId,
    exclude: &[DeviceId],
    caller: &DeviceAddress,
    valid_at: u64,
) -> Result<Vec<ClaimedPackage>, StoreError> {
    let known: Option<i64> = tx
        .query_row(
            "SELECT 1 FROM users WHERE user = ?1",
            params![user.as_str()],
            |r| r.get(0),
        )
        .optional()?;
    if known.is_none() {
        return Err(StoreError::NotFound);
    }
    let devices: Vec<DeviceId> = {
        let mut stmt = tx.prepare_cached(
            "SELECT device FROM devices WHERE user = ?1 AND status = 'approved' ORDER BY device",
        )?;
        let rows = stmt
            .query_map(params![user.as_str()], |r| r.get::<_, String>(0))?
            .collect::<rusqlite::Result<Vec<_>>>()?;
        rows.iter()
            .map(|d| parse_device(d))
            .collect::<Result<_, _>>()?
    };
    let valid_at = to_i64(valid_at)?;
    let mut out = Vec::new();
    for device in devices {
        if exclude.contains(&device) || (caller.user == *user && caller.device == device) {
            continue;
        }
        let dev = device.to_string();
        // Nobody can use an expired one-time package: it goes. (Packages
        // stored before lifetimes were kept have none, and stay.)
        tx.prepare_cached(
            "DELETE FROM key_packages WHERE user = ?1 AND device = ?2 AND last_resort = 0 \
             AND not_after <= ?3",
        )?
        .execute(params![user.as_str(), dev, valid_at])?;
        // One-time packages first (oldest first), the last-resort one after.
        let row: Option<(i64, Vec<u8>, i64)> = tx
            .prepare_cached(
                "SELECT id, bytes, last_resort FROM key_packages WHERE user = ?1 AND device = ?2 \
                 AND (not_after IS NULL OR not_after > ?3) ORDER BY last_resort ASC, id ASC LIMIT 1",
            )?
            .query_row(params![user.as_str(), dev, valid_at], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        let Some((id, bytes, last_resort)) = row else {
            continue;
        };
        let last_resort = last_resort != 0;
        if !last_resort {
            tx.prepare_cached("DELETE FROM key_packages WHERE id = ?1")?
                .execute(params![id])?;
        }
        out.push(ClaimedPackage {
            device,
            bytes,
            last_resort,
        });
    }
    Ok(out)
}
