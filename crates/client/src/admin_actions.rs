//! The administrator's actions on this account, shown to its owner (issue
//! 10): an invite issued for the account, a device revoked, an identity
//! reset. The server's audit log records them; on each sync (with the
//! housekeeping) the device asks for those of its account
//! (`GET /v1/audit/account`) and raises an `admin_action` alert for each,
//! with the entry and its inclusion proof as evidence.
//!
//! ```text
//! checkpoint ──verify(audit key pinned at enrolment)──▶ VerifiedCheckpoint
//!     ──verify_extends(last checkpoint seen, consistency proof)──▶ kept
//! each entry ──verify_inclusion(checkpoint)──▶ shown_to == this user ──▶ admin_action
//! ```
//! A server that signs another history (a rollback, a fork), proves an
//! entry not in its log, or hands an entry about someone else, raises
//! `audit_conflict` and this device goes no further. A server may still
//! withhold entries from `GET /v1/audit/account` that it did log: the
//! outside auditor (`valise audit-log --entries`) sees them in the log.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::home::account::AuditPin;
use reqwest::Method;
use valise_proto::api::{AccountAudit, ProvenEntry};
use valise_proto::audit::{Actor, Entry};
use valise_proto::bytes::Bytes;
use valise_proto::tlog::{AuditKey, Hash, SignedCheckpoint, VerifiedCheckpoint};

/// Why an answer of the audit log is refused (becomes `audit_conflict`).
type Conflict = String;

fn hashes(proof: &[Bytes]) -> std::result::Result<Vec<Hash>, Conflict> {
    proof
        .iter()
        .map(|h| {
            h.as_slice()
                .try_into()
                .map_err(|_| "a proof hash is not 32 bytes".to_owned())
        })
        .collect()
}

impl Client {
    /// Raises an alert for each administrator's action on this account
    /// logged since the last check; returns how many.
    pub(crate) async fn check_admin_actions(&mut self) -> Result<usize> {
        let Some(pin) = self.engine.home.audit_pin()? else {
            // Enrolled with a server that had no audit log.
            return Ok(0);
        };
        let key: [u8; 32] = pin
            .key
            .as_slice()
            .try_into()
            .map_err(|_| ClientError::Invalid("the pinned audit key is not 32 bytes".into()))?;
        let key = AuditKey::new(&pin.origin, &key)?;
        let mut shown = 0;
        let mut pin = pin;
        loop {
            let since = match &pin.checkpoint {
                Some(note) => SignedCheckpoint::parse(note)?.claimed().size(),
                None => 0,
            };
            let path = format!("/v1/audit/account?from={}&since={since}", pin.next);
            let answer: AccountAudit = match self.call::<(), _>(Method::GET, &path, None).await {
                Ok(a) => a,
                // No checkpoint yet: nothing to show.
                Err(e) if e.is_server(valise_proto::ErrorCode::NotFound) => return Ok(shown),
                Err(e) => return Err(e),
            };
            let (checkpoint, entries) = match self.check_answer(&key, &pin, &answer) {
                Ok(checked) => checked,
                Err(why) => {
                    // Said once while it lasts: this device stays at the
                    // checkpoint it saw, and is shown the conflict again
                    // on every sync.
                    let engine = &self.engine;
                    engine.transaction(|| {
                        if engine.home.note_audit_conflict(pin.checkpoint.as_deref())? {
                            return Ok(());
                        }
                        let evidence = serde_json::to_vec(&serde_json::json!({
                            "seen": pin.checkpoint,
                            "shown": answer.checkpoint,
                        }))
                        .ok();
                        engine.raise(AlertKind::AuditConflict, None, &why, evidence.as_deref())
                    })?;
                    return Ok(shown);
                }
            };
            let next = entries.last().map_or(pin.next, |(p, _)| p.index + 1);
            let engine = &self.engine;
            shown += engine.transaction(|| {
                let mut raised = 0;
                for (proven, entry) in &entries {
                    // Its own act (the reset it enrolled with) is no news.
                    if entry.actor == Actor::Device(engine.me.clone()) {
                        continue;
                    }
                    let evidence = serde_json::to_vec(&serde_json::json!({
                        "index": proven.index,
                        "entry": entry,
                        "proof": proven.proof,
                        "checkpoint": checkpoint.note(),
                    }))
                    .ok();
                    engine.raise(
                        AlertKind::AdminAction,
                        None,
                        &describe(entry),
                        evidence.as_deref(),
                    )?;
                    raised += 1;
                }
                engine
                    .home
                    .set_audit_progress(checkpoint.note(), next)
                    .map(|()| raised)
            })?;
            pin.next = next;
            pin.checkpoint = Some(checkpoint.note().to_owned());
            if !answer.more {
                return Ok(shown);
            }
        }
    }

    /// Checks an answer against the pinned key and the last checkpoint
    /// seen; the verified checkpoint and the entries for this account.
    fn check_answer(
        &self,
        key: &AuditKey,
        pin: &AuditPin,
        answer: &AccountAudit,
    ) -> std::result::Result<(VerifiedCheckpoint, Vec<(ProvenEntry, Entry)>), Conflict> {
        // An honest page that says more follow is full; an empty one
        // would have this device ask again for ever.
        if answer.more && answer.entries.is_empty() {
            return Err("the audit log says more entries follow but shows none".to_owned());
        }
        let checkpoint = SignedCheckpoint::parse(&answer.checkpoint)
            .and_then(|c| c.verify(key))
            .map_err(|e| format!("the audit checkpoint is refused: {e}"))?;
        if let Some(seen) = &pin.checkpoint {
            let seen = SignedCheckpoint::parse(seen)
                .and_then(|c| c.verify(key))
                .map_err(|e| format!("the audit checkpoint kept is unreadable: {e}"))?;
            checkpoint
                .verify_extends(seen.checkpoint(), &hashes(&answer.consistency)?)
                .map_err(|e| format!("the audit log changed its history: {e}"))?;
        }
        let mut out = Vec::with_capacity(answer.entries.len());
        let mut next = pin.next;
        for proven in &answer.entries {
            let bytes = proven.entry.as_slice();
            if proven.index < next {
                return Err(format!("audit entry {} comes out of order", proven.index));
            }
            checkpoint
                .verify_inclusion(proven.index, bytes, &hashes(&proven.proof)?)
                .map_err(|e| format!("audit entry {}: {e}", proven.index))?;
            let entry =
                Entry::decode(bytes).map_err(|e| format!("audit entry {}: {e}", proven.index))?;
            if entry.index != proven.index || entry.shown_to() != Some(&self.engine.me.user) {
                return Err(format!(
                    "audit entry {} is not about this account",
                    proven.index
                ));
            }
            next = proven.index + 1;
            out.push((proven.clone(), entry));
        }
        Ok((checkpoint, out))
    }
}

/// The alert's text: what the administrator did, on what.
fn describe(entry: &Entry) -> String {
    use valise_proto::audit::{Action, Subject};
    let subject = match &entry.subject {
        Some(Subject::User(u)) => u.to_string(),
        Some(Subject::Device(d)) => d.to_string(),
        Some(Subject::Conversation(c)) => c.to_string(),
        None => String::new(),
    };
    match entry.action {
        Action::InviteIssued => format!(
            "the administrator issued an enrolment invite for {subject} (audit entry {})",
            entry.index
        ),
        Action::DeviceRevoked => format!(
            "the administrator revoked device {subject} (audit entry {})",
            entry.index
        ),
        Action::AttestationPublished => format!(
            "the administrator published an accreditation attestation for {subject} (audit \
             entry {}): your devices accept it only if the security officer signed it",
            entry.index
        ),
        Action::IdentityReset => format!(
            "the identity of {subject} was reset with an administrator's invite (audit entry {})",
            entry.index
        ),
        other => format!(
            "the administrator acted on {subject}: {} (audit entry {})",
            other.as_str(),
            entry.index
        ),
    }
}
