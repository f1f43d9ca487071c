//! TEST ONLY (feature `adversary`): [`Tamper`] on SQLite, inside one write,
//! and snapshots of the whole database. Hidden rows live in a table of
//! their own that only this build creates and reads.

use super::*;
use std::collections::HashSet;

/// Creates the adversary's own table.
pub(super) fn prepare(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "CREATE TABLE IF NOT EXISTS hidden (
             device INTEGER NOT NULL,
             seq INTEGER NOT NULL,
             PRIMARY KEY (device, seq)
         ) STRICT, WITHOUT ROWID;",
    )?;
    Ok(())
}

/// The rows hidden from `device`.
pub(super) fn hidden(
    conn: &Connection,
    shared: &log::Shared,
    device: &DeviceAddress,
) -> Result<HashSet<u64>, StoreError> {
    let Some(n) = shared.device_num(conn, device)? else {
        return Ok(HashSet::new());
    };
    let mut stmt = conn.prepare_cached("SELECT seq FROM hidden WHERE device = ?1")?;
    let rows = stmt.query_map([n], |r| r.get::<_, i64>(0))?;
    rows.map(|r| to_u64(r?)).collect()
}

fn num(tx: &Transaction<'_>, d: &DeviceAddress) -> Result<i64, StoreError> {
    tx.query_row(
        "SELECT num FROM device_nums WHERE user = ?1 AND device = ?2",
        params![d.user.as_str(), d.device.to_string()],
        |r| r.get(0),
    )
    .optional()?
    .ok_or(StoreError::NotFound)
}

fn apply(
    tx: &Transaction<'_>,
    state: &mut log::LogState,
    shared: &log::Shared,
    op: &Tamper,
) -> Result<Vec<u64>, StoreError> {
    match op {
        Tamper::EntryOf { device, seq } => {
            let me = num(tx, device)?;
            let visible: Option<i64> = tx
                .query_row(
                    "SELECT l.seq FROM log l WHERE l.seq = ?1 AND (
                         EXISTS (SELECT 1 FROM targets t WHERE t.device = ?2 AND t.seq = l.seq)
                         OR (l.targeted = 0 AND EXISTS (
                             SELECT 1 FROM memberships m WHERE m.device = ?2 AND m.conv = l.conv
                             AND m.from_seq < l.seq AND (m.to_seq IS NULL OR l.seq <= m.to_seq))))",
                    params![to_i64(*seq)?, me],
                    |r| r.get(0),
                )
                .optional()?;
            visible.map(to_u64).into_iter().collect()
        }
        Tamper::LatestCommit { conversation } => {
            let row: Option<i64> = tx
                .query_row(
                    "SELECT max(l.seq) FROM log l JOIN conversations c ON c.num = l.conv
                     WHERE c.id = ?1 AND l.kind = ?2",
                    params![conversation.as_bytes(), log::tamper::commit_kind()],
                    |r| r.get(0),
                )
                .optional()?
                .flatten();
            row.map(to_u64).into_iter().collect()
        }
        Tamper::Withhold { row, devices } => {
            for d in devices {
                tx.execute(
                    "INSERT OR IGNORE INTO hidden (device, seq) VALUES (?1, ?2)",
                    params![num(tx, d)?, to_i64(*row)?],
                )?;
            }
            Ok(Vec::new())
        }
        Tamper::Deliver { row, devices } => Ok(vec![log::tamper::copy_row(
            tx, state, shared, *row, devices,
        )?]),
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
        Tamper::StoreCommit {
            conversation,
            sender,
            commit,
            now_ms,
        } => {
            let conv: i64 = tx.query_row(
                "SELECT num FROM conversations WHERE id = ?1",
                [conversation.as_bytes()],
                |r| r.get(0),
            )?;
            Ok(vec![log::tamper::stored_row(
                tx,
                state,
                shared,
                conv,
                log::tamper::commit_kind(),
                num(tx, sender)?,
                commit,
                None,
                *now_ms,
                &[],
            )?])
        }
    }
}

impl Tampering for SqliteStore {
    fn tamper(&self, op: &Tamper) -> Result<Vec<u64>, StoreError> {
        let shared = &self.shared;
        self.write_with(|tx, state| apply(tx, state, shared, op))
    }

    /// `VACUUM INTO` a new file beside the database: one consistent
    /// snapshot, taken on a reader so that writers go on meanwhile.
    fn snapshot(&self) -> Result<std::path::PathBuf, StoreError> {
        let conn = self.reader();
        let db = conn
            .path()
            .filter(|p| !p.is_empty())
            .ok_or_else(|| StoreError::Corrupt("the database has no file".into()))?;
        let copy =
            std::path::PathBuf::from(format!("{db}.snapshot-{:016x}", rand::random::<u64>()));
        let target = copy
            .to_str()
            .ok_or_else(|| StoreError::Corrupt("snapshot path is not UTF-8".into()))?;
        conn.execute("VACUUM INTO ?1", params![target])?;
        Ok(copy)
    }

    fn waiting(&self, device: &DeviceAddress) -> Result<Vec<StoredEntry>, StoreError> {
        Ok(self
            .inbox(device, None, usize::MAX >> 1, usize::MAX)?
            .entries)
    }
}
