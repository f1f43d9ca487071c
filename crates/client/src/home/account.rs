//! The device's own account: who it is, where its server is, how far it
//! read its inbox, and when its key packages expire.

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{OptionalExtension, params};
use valise_proto::{DeviceAddress, DeviceId, UserId};

/// The one account row.
pub struct Account {
    pub server: String,
    pub ca_pem: String,
    pub me: DeviceAddress,
    /// The device's MLS signature public key (its private half is in
    /// openmls' storage).
    pub signature_key: Vec<u8>,
    pub domain: String,
}

/// The server's audit log as this device follows it (issue 10).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditPin {
    /// The log's origin (key name) and Ed25519 key, pinned at enrolment.
    pub origin: String,
    pub key: Vec<u8>,
    /// The newest checkpoint verified (signed note).
    pub checkpoint: Option<String>,
    /// The next entry number to ask for.
    pub next: u64,
}

/// The account table holds one row (`CHECK (id = 1)`).
pub(super) const INBOX_CURSOR: &str = "SELECT inbox_cursor FROM account";
pub(super) const SET_INBOX_CURSOR: &str = "UPDATE account SET inbox_cursor = ?1";

impl Home {
    /// The account, once enrolled.
    pub fn account(&self) -> Result<Option<Account>> {
        Ok(self
            .conn
            .query_row(
                "SELECT server, ca_pem, user, device, signature_key, domain FROM account WHERE id = 1",
                [],
                |r| {
                    Ok(Account {
                        server: r.get(0)?,
                        ca_pem: r.get(1)?,
                        me: DeviceAddress::new(
                            parse_col(r, 2, UserId::parse)?,
                            parse_col(r, 3, DeviceId::parse)?,
                        ),
                        signature_key: r.get(4)?,
                        domain: r.get(5)?,
                    })
                },
            )
            .optional()?)
    }

    pub fn insert_account(&self, a: &Account) -> Result<()> {
        self.conn.execute(
            "INSERT INTO account (id, server, ca_pem, user, device, signature_key, domain)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                a.server,
                a.ca_pem,
                a.me.user.as_str(),
                a.me.device.to_string(),
                a.signature_key,
                a.domain
            ],
        )?;
        Ok(())
    }

    /// The server's opaque cursor to read this device's inbox on from
    /// (`None`: from what the server has acknowledged).
    pub fn inbox_cursor(&self) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(INBOX_CURSOR)?
            .query_row([], |r| r.get(0))?)
    }

    /// Moves the inbox cursor (in the transaction that applied the entries).
    pub fn set_inbox_cursor(&self, cursor: &[u8]) -> Result<()> {
        self.conn
            .prepare_cached(SET_INBOX_CURSOR)?
            .execute([cursor])?;
        Ok(())
    }

    /// Reads the inbox again from the start: the server was restored from
    /// an older copy and its positions mean something else now. What this
    /// device sent since that copy may be lost: a re-send is due too.
    pub fn restart_inbox(&self) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE account SET inbox_cursor = NULL, resend_due = 1")?
            .execute([])?;
        Ok(())
    }

    /// Whether this device's letters are to be sealed again after a
    /// server restore.
    pub fn resend_due(&self) -> Result<bool> {
        Ok(self
            .conn
            .prepare_cached("SELECT resend_due FROM account")?
            .query_row([], |r| r.get(0))?)
    }

    /// They are sealed again.
    pub fn resend_done(&self) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE account SET resend_due = 0")?
            .execute([])?;
        Ok(())
    }

    /// The pinned audit log, if the server gave its key at enrolment.
    pub fn audit_pin(&self) -> Result<Option<AuditPin>> {
        Ok(self
            .conn
            .query_row(
                "SELECT audit_origin, audit_key, audit_checkpoint, audit_next
                 FROM account WHERE audit_key IS NOT NULL",
                [],
                |r| {
                    Ok(AuditPin {
                        origin: r.get(0)?,
                        key: r.get(1)?,
                        checkpoint: r.get(2)?,
                        next: r.get::<_, i64>(3)? as u64,
                    })
                },
            )
            .optional()?)
    }

    /// Pins the audit key at enrolment; the administrator's actions are
    /// shown from log position `from` on.
    pub fn pin_audit(&self, origin: &str, key: &[u8], from: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET audit_origin = ?1, audit_key = ?2, audit_next = ?3",
            params![origin, key, from as i64],
        )?;
        Ok(())
    }

    /// Notes that `audit_conflict` was raised while this device stood at
    /// `checkpoint` (`None`: before any); true if it was already.
    pub fn note_audit_conflict(&self, checkpoint: Option<&str>) -> Result<bool> {
        let at = checkpoint.unwrap_or("");
        let changed = self.conn.execute(
            "UPDATE account SET audit_conflict_at = ?1
             WHERE audit_conflict_at IS NULL OR audit_conflict_at != ?1",
            [at],
        )?;
        Ok(changed == 0)
    }

    /// Records the newest checkpoint verified and the next entry to ask for.
    pub fn set_audit_progress(&self, checkpoint: &str, next: u64) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET audit_checkpoint = ?1, audit_next = ?2",
            params![checkpoint, next as i64],
        )?;
        Ok(())
    }

    /// When the uploaded one-time and last-resort key packages expire
    /// (seconds; 0: unknown).
    pub fn key_packages_until(&self) -> Result<(u64, u64)> {
        let (one_time, last_resort): (i64, i64) = self.conn.query_row(
            "SELECT one_time_until, last_resort_until FROM account",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok((one_time as u64, last_resort as u64))
    }

    /// Records when the one-time packages now on the server start to
    /// expire (after a rotation, or at enrolment), and the last-resort one
    /// if it was replaced.
    pub fn set_key_packages_until(&self, one_time: u64, last_resort: Option<u64>) -> Result<()> {
        self.conn.execute(
            "UPDATE account SET one_time_until = ?1,
                 last_resort_until = coalesce(?2, last_resort_until)",
            params![one_time as i64, last_resort.map(|t| t as i64)],
        )?;
        Ok(())
    }
}
