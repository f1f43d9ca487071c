//! Attachment blobs' records (`migrations/0009_blobs.sql`); their bytes
//! are files, see `crate::blobs`. Every part and every ranged read runs
//! these: each goes by index (HOT_PATH).

use super::*;

const USED: &str = "SELECT COALESCE(SUM(length), 0) FROM blobs WHERE owner = ?1";
const CREATE: &str = "INSERT INTO blobs (id, owner, length, durable, parts, created_at_ms) \
     VALUES (?1, ?2, ?3, 0, 0, ?4)";
const GET: &str = "SELECT owner, length, durable, parts, created_at_ms FROM blobs WHERE id = ?1";
const PART: &str = "UPDATE blobs SET durable = ?3, parts = parts + 1 \
     WHERE id = ?1 AND durable = ?2 AND ?3 <= length";
/// Only the owner links, only a complete blob. The link's own moment is
/// not kept: it is when the letter went, the same for all its blobs, and
/// linked blobs stay for good, so a backup would tie them into one letter
/// for years. The creation time, kept anyway, says only "linked" (as
/// migration 0011 marks blobs completed before it).
const LINK: &str = "UPDATE blobs SET linked_at_ms = created_at_ms \
     WHERE id = ?1 AND owner = ?2 AND durable = length";
const EXPIRE: &str =
    "DELETE FROM blobs WHERE linked_at_ms IS NULL AND created_at_ms < ?1 RETURNING id";

/// The statements whose query plans a test checks (no table scan).
#[cfg(test)]
pub(super) const HOT_PATH: &[(&str, &str)] = &[
    ("BLOB_USED", USED),
    ("BLOB_CREATE", CREATE),
    ("BLOB_GET", GET),
    ("BLOB_PART", PART),
    ("BLOB_LINK", LINK),
    ("BLOB_EXPIRE", EXPIRE),
];

pub(super) fn create(tx: &Transaction<'_>, b: &BlobRecord, quota: u64) -> Result<(), StoreError> {
    let used: i64 = tx
        .prepare_cached(USED)?
        .query_row(params![b.owner.as_str()], |r| r.get(0))?;
    if to_u64(used)?.saturating_add(b.length) > quota {
        return Err(StoreError::QuotaExceeded);
    }
    let inserted = tx.prepare_cached(CREATE)?.execute(params![
        b.id.as_bytes(),
        b.owner.as_str(),
        to_i64(b.length)?,
        b.created_at_ms
    ]);
    match inserted {
        Err(e) if is_unique_violation(&e) => Err(StoreError::AlreadyExists),
        other => Ok(other.map(drop)?),
    }
}

pub(super) fn get(conn: &Connection, id: &BlobId) -> Result<Option<BlobRecord>, StoreError> {
    let row = conn
        .prepare_cached(GET)?
        .query_row(params![id.as_bytes()], |r| {
            Ok((
                r.get::<_, String>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
                r.get::<_, i64>(3)?,
                r.get::<_, i64>(4)?,
            ))
        })
        .optional()?;
    row.map(|(owner, length, durable, parts, created_at_ms)| {
        Ok(BlobRecord {
            id: *id,
            owner: parse_user(&owner)?,
            length: to_u64(length)?,
            durable: to_u64(durable)?,
            parts: to_u64(parts)?,
            created_at_ms,
        })
    })
    .transpose()
}

pub(super) fn part(
    tx: &Transaction<'_>,
    id: &BlobId,
    from: u64,
    to: u64,
) -> Result<(), StoreError> {
    let changed =
        tx.prepare_cached(PART)?
            .execute(params![id.as_bytes(), to_i64(from)?, to_i64(to)?])?;
    if changed == 1 {
        Ok(())
    } else {
        Err(StoreError::Changed(
            "the blob is no longer at that offset".into(),
        ))
    }
}

pub(super) fn link(
    tx: &Transaction<'_>,
    owner: &UserId,
    ids: &[BlobId],
) -> Result<Vec<BlobId>, StoreError> {
    let mut link = tx.prepare_cached(LINK)?;
    let mut missing = Vec::new();
    for id in ids {
        if link.execute(params![id.as_bytes(), owner.as_str()])? == 0 {
            missing.push(*id);
        }
    }
    Ok(missing)
}

pub(super) fn expire(tx: &Transaction<'_>, before_ms: i64) -> Result<Vec<BlobId>, StoreError> {
    let ids = tx
        .prepare_cached(EXPIRE)?
        .query_map(params![before_ms], |r| r.get::<_, Vec<u8>>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    ids.iter()
        .map(|b| BlobId::from_slice(b).map_err(|e| StoreError::Corrupt(e.to_string())))
        .collect()
}
