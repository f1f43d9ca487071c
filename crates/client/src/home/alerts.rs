//! Alerts kept as evidence: what this device refused or noticed.

use super::Home;
use crate::error::Result;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;

/// One alert as `valise alerts` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct Alert {
    pub id: i64,
    pub at_ms: i64,
    pub kind: String,
    pub conversation: Option<String>,
    pub detail: String,
    /// Hex of the evidence bytes, if any.
    pub evidence: Option<String>,
}

pub(super) const INSERT: &str = "INSERT INTO alerts (at_ms, kind, conversation, detail, evidence)
    VALUES (?1, ?2, ?3, ?4, ?5)";

impl Home {
    /// Records an alert (inside the caller's transaction, if any).
    pub fn insert_alert(
        &self,
        at_ms: i64,
        kind: &str,
        conversation: Option<String>,
        detail: &str,
        evidence: Option<&[u8]>,
    ) -> Result<()> {
        self.conn.prepare_cached(INSERT)?.execute(params![
            at_ms,
            kind,
            conversation,
            detail,
            evidence
        ])?;
        Ok(())
    }

    /// Alerts, oldest first: all of them, or only those not yet marked seen.
    pub fn alerts(&self, unseen_only: bool) -> Result<Vec<Alert>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT id, at_ms, kind, conversation, detail, evidence FROM alerts
             WHERE seen = 0 OR ?1 = 0 ORDER BY id",
        )?;
        let rows = stmt.query_map([unseen_only], |r| {
            Ok(Alert {
                id: r.get(0)?,
                at_ms: r.get(1)?,
                kind: r.get(2)?,
                conversation: r.get(3)?,
                detail: r.get(4)?,
                evidence: r.get::<_, Option<Vec<u8>>>(5)?.map(hex::encode),
            })
        })?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    /// Whether an alert of this kind with exactly this evidence was raised.
    pub fn has_alert(&self, kind: &str, evidence: &[u8]) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT 1 FROM alerts WHERE kind = ?1 AND evidence = ?2 LIMIT 1")?
            .query_row(params![kind, evidence], |_| Ok(()))
            .optional()?
            .is_some())
    }

    /// Marks every alert up to `id` as shown.
    pub fn mark_alerts_seen(&self, up_to: i64) -> Result<()> {
        self.conn.execute(
            "UPDATE alerts SET seen = 1 WHERE seen = 0 AND id <= ?1",
            [up_to],
        )?;
        Ok(())
    }
}
