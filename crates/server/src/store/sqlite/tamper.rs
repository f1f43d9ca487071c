//! TEST ONLY (feature `adversary`): [`Tamper`] on SQLite, inside one write,
//! and snapshots of the whole database.

use super::*;

pub(super) fn apply(tx: &Transaction<'_>, op: &Tamper) -> Result<Vec<i64>, StoreError> {
    match op {
        Tamper::PayloadOf { device, seq } => {
            let payload: Option<i64> = tx
                .query_row(
                    "SELECT payload_id FROM inbox WHERE user = ?1 AND device = ?2 AND seq = ?3",
                    params![
                        device.user.as_str(),
                        device.device.to_string(),
                        to_i64(*seq)?
                    ],
                    |r| r.get(0),
                )
                .optional()?;
            Ok(payload.into_iter().collect())
        }
        Tamper::LatestCommit { conversation } => {
            let payload: Option<i64> = tx
                .query_row(
                    "SELECT max(id) FROM payloads WHERE conversation = ?1 AND kind = ?2",
                    params![conversation.as_bytes(), KIND_COMMIT],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            Ok(payload.into_iter().collect())
        }
        Tamper::Withhold { payload, devices } => {
            let mut stmt = tx
                .prepare("DELETE FROM inbox WHERE payload_id = ?1 AND user = ?2 AND device = ?3")?;
            for d in devices {
                stmt.execute(params![payload, d.user.as_str(), d.device.to_string()])?;
            }
            Ok(Vec::new())
        }
        Tamper::DiskFull(full) => {
            // SQLite's own ceiling: writes past it fail with SQLITE_FULL,
            // as on a full disk (pages already free are still used first).
            let pages: i64 = if *full {
                tx.query_row("PRAGMA page_count", [], |r| r.get(0))?
            } else {
                i64::from(u32::MAX - 1)
            };
            tx.query_row(&format!("PRAGMA max_page_count = {pages}"), [], |_| Ok(()))?;
            Ok(Vec::new())
        }
        Tamper::Deliver { payload, devices } => {
            queue(tx, *payload, devices)?;
            Ok(Vec::new())
        }
        Tamper::StoreCommit {
            conversation,
            sender,
            commit,
            now_ms,
        } => {
            let id = insert_payload(
                tx,
                conversation,
                sender,
                KIND_COMMIT,
                commit,
                None,
                None,
                *now_ms,
            )?;
            Ok(vec![id])
        }
    }
}

/// `VACUUM INTO` a new file beside the database: one consistent snapshot,
/// taken on a reader so that writers go on meanwhile.
pub(super) fn snapshot(conn: &Connection) -> Result<std::path::PathBuf, StoreError> {
    let db = conn
        .path()
        .filter(|p| !p.is_empty())
        .ok_or_else(|| StoreError::Corrupt("the database has no file".into()))?;
    let copy = std::path::PathBuf::from(format!("{db}.snapshot-{:016x}", rand::random::<u64>()));
    let target = copy
        .to_str()
        .ok_or_else(|| StoreError::Corrupt("snapshot path is not UTF-8".into()))?;
    conn.execute("VACUUM INTO ?1", params![target])?;
    Ok(copy)
}
