//! Alerts: what a device refused or noticed that its user must see.
//!
//! A server in an intruder's hands may hand a device forged, replayed or
//! moved messages; the device refuses them (nothing is shown) and records an
//! alert with the bytes as evidence, so that the intrusion is *seen*.

use crate::client::{Client, now_ms};
use crate::error::Result;
use rusqlite::params;
use serde::Serialize;
use valise_proto::ConversationId;

/// Kinds of alert; the snake_case name is stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum AlertKind {
    /// The server delivered something that failed verification or replayed
    /// what was already received.
    RefusedMessage,
    /// This device's one-time key packages ran out: others may have added it
    /// with its last-resort package until it restocked.
    KeyPackagesExhausted,
    /// A key the server offered is not in the key directory (key substitution).
    KeyNotInDirectory,
    /// A device or key appeared in this user's directory entry.
    NewDevice,
    /// The server showed a directory root this device refuses (rollback,
    /// split view, bad signature).
    DirectoryConflict,
    /// A sender's letters arrived with numbers missing: the server withheld some.
    LettersWithheld,
    /// Two different commits arrived for one epoch of a conversation: the
    /// server accepted both, so members may follow different histories.
    Fork,
    /// The server fanned a letter out to more or fewer devices than the
    /// conversation's MLS roster holds (a ghost member, or members cut off).
    RosterMismatch,
    /// This device had lost track of a conversation and rejoined it.
    Rejoined,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefusedMessage => "refused_message",
            Self::KeyPackagesExhausted => "key_packages_exhausted",
            Self::KeyNotInDirectory => "key_not_in_directory",
            Self::NewDevice => "new_device",
            Self::DirectoryConflict => "directory_conflict",
            Self::LettersWithheld => "letters_withheld",
            Self::Fork => "fork",
            Self::RosterMismatch => "roster_mismatch",
            Self::Rejoined => "rejoined",
        }
    }
}

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

impl Client {
    /// Records an alert (inside the caller's transaction, if any).
    pub(crate) fn raise(
        &self,
        kind: AlertKind,
        conversation: Option<&ConversationId>,
        detail: &str,
        evidence: Option<&[u8]>,
    ) -> Result<()> {
        tracing::warn!(kind = kind.as_str(), detail, "ALERT");
        self.home
            .conn
            .prepare_cached(
                "INSERT INTO alerts (at_ms, kind, conversation, detail, evidence)
                 VALUES (?1, ?2, ?3, ?4, ?5)",
            )?
            .execute(params![
                now_ms(),
                kind.as_str(),
                conversation.map(|c| c.to_string()),
                detail,
                evidence
            ])?;
        Ok(())
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        self.alerts_where("1")
    }

    /// Alerts not yet shown by [`Client::take_new_alerts`], which marks them seen.
    pub fn take_new_alerts(&self) -> Result<Vec<Alert>> {
        let new = self.alerts_where("seen = 0")?;
        self.home
            .conn
            .execute("UPDATE alerts SET seen = 1 WHERE seen = 0", [])?;
        Ok(new)
    }

    fn alerts_where(&self, filter: &str) -> Result<Vec<Alert>> {
        let mut stmt = self.home.conn.prepare(&format!(
            "SELECT id, at_ms, kind, conversation, detail, evidence FROM alerts
             WHERE {filter} ORDER BY id"
        ))?;
        let rows = stmt.query_map([], |r| {
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
}
