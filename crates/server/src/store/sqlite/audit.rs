//! The audit log's tables (`migrations/0006_audit.sql`): entries, complete
//! subtree hashes, signed checkpoints, and the queue `valised admin` writes
//! to, and the index of the entries that are alerts
//! (`migrations/0008_server_alerts.sql`). Every statement reads or writes
//! by primary key (HOT_PATH).

use super::{to_i64, to_u64};
use crate::store::{AuditBatch, StoreError};
use rusqlite::{Connection, OptionalExtension as _, Transaction, params};
use valise_proto::UserId;
use valise_proto::tlog::{HASH_LEN, Hash, Subtree};

const SIZE: &str = "SELECT MAX(idx) FROM audit_entries";
/// One statement, so one snapshot: an append that takes queued entries in
/// between cannot count them twice or not at all.
const POSITION: &str = "SELECT coalesce((SELECT MAX(idx) + 1 FROM audit_entries), 0) \
     + (SELECT count(*) FROM audit_queue WHERE id > 0)";
const APPEND_ENTRY: &str = "INSERT INTO audit_entries (idx, bytes) VALUES (?1, ?2)";
const APPEND_NODE: &str = "INSERT INTO audit_nodes (level, idx, hash) VALUES (?1, ?2, ?3)";
const NODE: &str = "SELECT hash FROM audit_nodes WHERE level = ?1 AND idx = ?2";
const ENTRIES: &str = "SELECT idx, bytes FROM audit_entries WHERE idx >= ?1 ORDER BY idx LIMIT ?2";
const APPEND_CHECKPOINT: &str =
    "INSERT INTO audit_checkpoints (size, note, signed_at_ms) VALUES (?1, ?2, ?3)";
const LATEST_CHECKPOINT: &str =
    "SELECT note FROM audit_checkpoints WHERE size >= 0 ORDER BY size DESC LIMIT 1";
const QUEUE: &str = "INSERT INTO audit_queue (bytes) VALUES (?1)";
const QUEUED: &str = "SELECT id, bytes FROM audit_queue WHERE id > 0 ORDER BY id LIMIT ?1";
const DEQUEUE: &str = "DELETE FROM audit_queue WHERE id <= ?1";
const APPEND_ACCOUNT: &str = "INSERT INTO audit_account (user, idx) VALUES (?1, ?2)";
const ACCOUNT: &str = "SELECT idx FROM audit_account WHERE user = ?1 AND idx >= ?2 AND idx < ?3 \
     ORDER BY idx LIMIT ?4";
const APPEND_ALERT: &str = "INSERT INTO alerts (idx) VALUES (?1)";
const ALERTS: &str = "SELECT e.idx, e.bytes FROM alerts a JOIN audit_entries e ON e.idx = a.idx \
     WHERE a.idx >= ?1 ORDER BY a.idx LIMIT ?2";

/// Every statement of the audit writer and of the public routes.
#[cfg(test)]
pub(super) const HOT_PATH: &[(&str, &str)] = &[
    ("AUDIT_SIZE", SIZE),
    ("AUDIT_POSITION", POSITION),
    ("AUDIT_APPEND_ENTRY", APPEND_ENTRY),
    ("AUDIT_APPEND_NODE", APPEND_NODE),
    ("AUDIT_NODE", NODE),
    ("AUDIT_ENTRIES", ENTRIES),
    ("AUDIT_APPEND_CHECKPOINT", APPEND_CHECKPOINT),
    ("AUDIT_LATEST_CHECKPOINT", LATEST_CHECKPOINT),
    ("AUDIT_QUEUE", QUEUE),
    ("AUDIT_QUEUED", QUEUED),
    ("AUDIT_DEQUEUE", DEQUEUE),
    ("AUDIT_APPEND_ACCOUNT", APPEND_ACCOUNT),
    ("AUDIT_ACCOUNT", ACCOUNT),
    ("AUDIT_APPEND_ALERT", APPEND_ALERT),
    ("AUDIT_ALERTS", ALERTS),
];

pub(super) fn size(conn: &Connection) -> Result<u64, StoreError> {
    let last: Option<i64> = conn.prepare_cached(SIZE)?.query_row([], |r| r.get(0))?;
    last.map_or(Ok(0), |l| Ok(to_u64(l)? + 1))
}

pub(super) fn position(conn: &Connection) -> Result<u64, StoreError> {
    let at: i64 = conn.prepare_cached(POSITION)?.query_row([], |r| r.get(0))?;
    to_u64(at)
}

pub(super) fn append(tx: &Transaction<'_>, batch: &AuditBatch) -> Result<(), StoreError> {
    let at = size(tx)?;
    if batch.first != at {
        return Err(StoreError::Changed(format!(
            "audit entries from {} appended to a log of {at}",
            batch.first
        )));
    }
    let mut stmt = tx.prepare_cached(APPEND_ENTRY)?;
    for (i, bytes) in (batch.first..).zip(&batch.entries) {
        stmt.execute(params![to_i64(i)?, bytes])?;
    }
    let mut stmt = tx.prepare_cached(APPEND_NODE)?;
    for (node, hash) in &batch.nodes {
        stmt.execute(params![node.level, to_i64(node.index)?, hash.as_slice()])?;
    }
    let mut stmt = tx.prepare_cached(APPEND_ACCOUNT)?;
    for (user, i) in &batch.accounts {
        stmt.execute(params![user.as_str(), to_i64(*i)?])?;
    }
    let mut stmt = tx.prepare_cached(APPEND_ALERT)?;
    for i in &batch.alerts {
        stmt.execute([to_i64(*i)?])?;
    }
    if let Some(up_to) = batch.dequeued {
        tx.prepare_cached(DEQUEUE)?.execute([to_i64(up_to)?])?;
    }
    if let Some(c) = &batch.checkpoint {
        tx.prepare_cached(APPEND_CHECKPOINT)?.execute(params![
            to_i64(c.size)?,
            c.note,
            c.signed_at_ms
        ])?;
    }
    Ok(())
}

pub(super) fn nodes(conn: &Connection, nodes: &[Subtree]) -> Result<Vec<Hash>, StoreError> {
    let mut stmt = conn.prepare_cached(NODE)?;
    nodes
        .iter()
        .map(|n| {
            let hash: Vec<u8> = stmt
                .query_row(params![n.level, to_i64(n.index)?], |r| r.get(0))
                .optional()?
                .ok_or(StoreError::NotFound)?;
            <[u8; HASH_LEN]>::try_from(hash.as_slice())
                .map_err(|_| StoreError::Corrupt(format!("audit node {n:?} is not a hash")))
        })
        .collect()
}

/// Rows of (number, bytes): entries, queued entries, alerts.
fn numbered(
    conn: &Connection,
    sql: &str,
    params: impl rusqlite::Params,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    let mut stmt = conn.prepare_cached(sql)?;
    let rows = stmt.query_map(params, |r| {
        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
    })?;
    rows.map(|row| {
        let (n, bytes) = row?;
        Ok((to_u64(n)?, bytes))
    })
    .collect()
}

pub(super) fn entries(
    conn: &Connection,
    start: u64,
    count: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    numbered(
        conn,
        ENTRIES,
        params![to_i64(start)?, to_i64(count as u64)?],
    )
}

pub(super) fn latest_checkpoint(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached(LATEST_CHECKPOINT)?
        .query_row([], |r| r.get(0))
        .optional()?)
}

pub(super) fn checkpoints(conn: &Connection) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT note FROM audit_checkpoints ORDER BY size")?;
    let rows = stmt.query_map([], |r| r.get(0))?;
    Ok(rows.collect::<Result<_, _>>()?)
}

pub(super) fn queue(tx: &Transaction<'_>, entry: &[u8]) -> Result<(), StoreError> {
    tx.prepare_cached(QUEUE)?.execute([entry])?;
    Ok(())
}

pub(super) fn queued(conn: &Connection, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    numbered(conn, QUEUED, [to_i64(limit as u64)?])
}

pub(super) fn account(
    conn: &Connection,
    user: &UserId,
    from: u64,
    below: u64,
    limit: usize,
) -> Result<Vec<u64>, StoreError> {
    let mut stmt = conn.prepare_cached(ACCOUNT)?;
    let rows = stmt.query_map(
        params![
            user.as_str(),
            to_i64(from)?,
            to_i64(below)?,
            to_i64(limit as u64)?
        ],
        |r| r.get::<_, i64>(0),
    )?;
    rows.map(|i| to_u64(i?)).collect()
}

pub(super) fn alerts_from(
    conn: &Connection,
    from: u64,
    limit: usize,
) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
    numbered(conn, ALERTS, params![to_i64(from)?, to_i64(limit as u64)?])
}
