//! The security desk (issue 10): which desk this device reports to, the
//! budget of reports per alert kind, and, on the desk's own devices, the
//! reports received.

use super::{Home, parse_col};
use crate::error::{ClientError, Result};
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use valise_proto::{AlertReport, ConversationId, DeviceAddress, MessageId, UserId};

/// What this device knows of its organisation's security desk.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct DeskState {
    /// The desk this device reports to.
    pub pinned: Option<UserId>,
    /// The server names another desk than the pinned one (`offered`,
    /// `None`: no desk at all); the user has not accepted it yet.
    pub changed: bool,
    pub offered: Option<UserId>,
}

/// One report as the desk stored it; the JSON of `alerts --desk --json`
/// (docs/PROTOCOL.md, "Security desk reports (issue 10)").
#[derive(Debug, Clone, Serialize)]
pub struct DeskReport {
    /// Version of this schema.
    pub v: u32,
    /// Local, increasing: the order reports arrived in on this device.
    pub id: i64,
    /// The report's id, chosen by the reporting device (hex).
    pub report_id: String,
    /// The reporting user and device, as MLS authenticated them.
    pub user: UserId,
    pub device: String,
    pub received_at_ms: i64,
    pub kind: String,
    pub at_ms: i64,
    pub conversation: Option<String>,
    pub detail: String,
    pub evidence_sha256: Vec<String>,
    pub suppressed: u64,
}

/// Version of [`DeskReport`]'s JSON.
pub const REPORT_SCHEMA: u32 = 1;

pub(super) const DESK: &str = "SELECT pinned, changed, offered FROM security_desk WHERE id = 1";
pub(super) const BUDGET: &str =
    "SELECT window_start_ms, reported, suppressed FROM desk_budget WHERE kind = ?1";
pub(super) const PUT_BUDGET: &str =
    "INSERT INTO desk_budget (kind, window_start_ms, reported, suppressed)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (kind) DO UPDATE SET window_start_ms = excluded.window_start_ms,
        reported = excluded.reported, suppressed = excluded.suppressed";
pub(super) const STORE_REPORT: &str = "INSERT INTO desk_reports (report_id, sender_user,
        sender_device, via, received_at_ms, kind, at_ms, conversation, detail,
        evidence_sha256, suppressed)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
    ON CONFLICT (sender_user, report_id) DO NOTHING";
/// On the unique index: one row per accepted report.
pub(super) const NOTE_REPORT_SENT: &str =
    "INSERT INTO sent_reports (conversation, report_id, plaintext, sent_epoch)
     VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT (conversation, report_id) DO UPDATE SET sent_epoch = excluded.sent_epoch";
pub(super) const REPORTS_AFTER: &str = "SELECT id, report_id, sender_user, sender_device,
        received_at_ms, kind, at_ms, conversation, detail, evidence_sha256, suppressed
    FROM desk_reports WHERE id > ?1 ORDER BY id";

/// What the budget says of one more alert of a kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Budget {
    /// Report it, with the count of those not reported before it.
    Report { suppressed: u64 },
    /// Counted, not reported.
    Spent,
}

fn report(r: &Row<'_>) -> rusqlite::Result<DeskReport> {
    Ok(DeskReport {
        v: REPORT_SCHEMA,
        id: r.get(0)?,
        report_id: r.get(1)?,
        user: parse_col(r, 2, UserId::parse)?,
        device: r.get(3)?,
        received_at_ms: r.get(4)?,
        kind: r.get(5)?,
        at_ms: r.get(6)?,
        conversation: r.get(7)?,
        detail: r.get(8)?,
        evidence_sha256: parse_col(r, 9, |s| serde_json::from_str(s))?,
        suppressed: r.get::<_, i64>(10)? as u64,
    })
}

impl Home {
    pub fn security_desk(&self) -> Result<DeskState> {
        let user = |r: &Row<'_>, i| -> rusqlite::Result<Option<UserId>> {
            match r.get::<_, Option<String>>(i)? {
                Some(_) => parse_col(r, i, UserId::parse).map(Some),
                None => Ok(None),
            }
        };
        Ok(self.conn.prepare_cached(DESK)?.query_row([], |r| {
            Ok(DeskState {
                pinned: user(r, 0)?,
                changed: r.get(1)?,
                offered: user(r, 2)?,
            })
        })?)
    }

    /// Records what this device knows of the desk.
    pub fn set_security_desk(&self, s: &DeskState) -> Result<()> {
        self.conn.execute(
            "UPDATE security_desk SET pinned = ?1, changed = ?2, offered = ?3 WHERE id = 1",
            params![
                s.pinned.as_ref().map(UserId::as_str),
                s.changed,
                s.offered.as_ref().map(UserId::as_str)
            ],
        )?;
        Ok(())
    }

    /// Spends one report of `kind` from its budget: at most `per_window`
    /// reports each `window_ms`; the rest are counted.
    pub fn spend_desk_budget(
        &self,
        kind: &str,
        now_ms: i64,
        per_window: u64,
        window_ms: i64,
    ) -> Result<Budget> {
        let (mut start, mut reported, mut suppressed) = self
            .conn
            .prepare_cached(BUDGET)?
            .query_row([kind], |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, i64>(2)?,
                ))
            })
            .optional()?
            .unwrap_or((now_ms, 0, 0));
        // A clock set back starts a window too.
        if now_ms.saturating_sub(start) >= window_ms || now_ms < start {
            (start, reported) = (now_ms, 0);
        }
        let out = if (reported as u64) < per_window {
            let before = suppressed as u64;
            (reported, suppressed) = (reported + 1, 0);
            Budget::Report { suppressed: before }
        } else {
            suppressed += 1;
            Budget::Spent
        };
        self.conn
            .prepare_cached(PUT_BUDGET)?
            .execute(params![kind, start, reported, suppressed])?;
        Ok(out)
    }

    /// Stores a report received in `via` from `sender`; `false` if this
    /// sender's report id was stored already (sent again after a fork).
    pub fn store_report(
        &self,
        via: &ConversationId,
        sender: &DeviceAddress,
        r: &AlertReport,
        now_ms: i64,
    ) -> Result<bool> {
        let evidence: Vec<String> = r.evidence_sha256.iter().map(|d| hex::encode(d.0)).collect();
        let evidence =
            serde_json::to_string(&evidence).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let inserted = self.conn.prepare_cached(STORE_REPORT)?.execute(params![
            r.message_id.to_string(),
            sender.user.as_str(),
            sender.device.to_string(),
            via.to_string(),
            now_ms,
            r.kind,
            r.at_ms,
            r.conversation.map(|c| c.to_string()),
            r.detail,
            evidence,
            i64::try_from(r.suppressed).unwrap_or(i64::MAX)
        ])?;
        Ok(inserted == 1)
    }

    /// Reports received with a local id above `after`, oldest first.
    pub fn reports_after(&self, after: i64) -> Result<Vec<DeskReport>> {
        let mut stmt = self.conn.prepare_cached(REPORTS_AFTER)?;
        Ok(stmt.query_map([after], report)?.collect::<Result<_, _>>()?)
    }

    /// The server accepted this device's report (`plaintext` as written)
    /// in `epoch`: kept to be sealed again if the server loses it.
    pub fn note_report_sent(
        &self,
        conv: &ConversationId,
        report_id: &MessageId,
        plaintext: &[u8],
        epoch: u64,
    ) -> Result<()> {
        self.conn
            .prepare_cached(NOTE_REPORT_SENT)?
            .execute(params![
                conv.to_string(),
                report_id.to_string(),
                plaintext,
                epoch as i64
            ])?;
        Ok(())
    }

    /// This device's reports in `conv` that the server accepted in `epoch`
    /// or later, as written, oldest first.
    pub fn reports_sent_since(&self, conv: &ConversationId, epoch: u64) -> Result<Vec<Vec<u8>>> {
        let mut stmt = self.conn.prepare(
            "SELECT plaintext FROM sent_reports WHERE conversation = ?1 AND sent_epoch >= ?2
             ORDER BY id",
        )?;
        Ok(stmt
            .query_map(params![conv.to_string(), epoch as i64], |r| r.get(0))?
            .collect::<Result<_, _>>()?)
    }

    /// The last report `alerts --desk --follow` wrote out.
    pub fn printed_report(&self) -> Result<i64> {
        Ok(self
            .conn
            .query_row("SELECT printed FROM security_desk WHERE id = 1", [], |r| {
                r.get(0)
            })?)
    }

    /// Notes that report `id` was written out (and flushed).
    pub fn set_printed_report(&self, id: i64) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE security_desk SET printed = ?1 WHERE id = 1")?
            .execute([id])?;
        Ok(())
    }
}
