//! Reporting to the security desk (issue 10): every alert this device
//! raises is also written, in the same transaction, as an alert report to
//! the desk its user's organisation named, through the outbox like a
//! `send --to` letter to exactly the desk. It is sealed in the direct
//! conversation between this user and the desk (made on first use) and
//! numbered with that conversation's letters, so the server can neither
//! read, forge nor drop it unseen (A7 applies to it as to any letter).
//!
//! Once accepted, a report is kept as written and sealed again, like a
//! letter, after a fork or a server restore (`Engine::reseal_sent`).
//!
//! ```text
//! Engine::raise ─▶ alerts row  ┐ one transaction
//!               └▶ outbox: Alert report, exact_to = {user, desk}, held
//! sync ─▶ deliver_outbox ─▶ release: the direct conversation (made if
//!          need be) ─▶ seal_or_hold (numbered) ─▶ POST /v1/letters
//! desk's sync ─▶ inbound: numbers checked ─▶ desk_reports (sender = MLS)
//! ```
//! Bounds: the desk's own devices do not report (their alerts are on the
//! desk already); each kind has a budget of [`REPORTS_PER_WINDOW`] reports
//! per [`WINDOW_MS`], the alerts past it counted into the next report of
//! the kind, which also bounds a loop through the desk conversation itself
//! (an alert about it is reported in it). The desk is pinned: the first
//! one learnt (at enrolment, or on first sight after it, trust on first
//! use like the directory); a server naming another raises
//! `security_desk_changed` and reports keep going to the pinned one until
//! the user accepts the new one.

use super::Engine;
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::home::desk::{Budget, DeskState};
use crate::home::outbox::Outbound;
use crate::mls;
use sha2::{Digest, Sha256};
use valise_proto::report::MAX_DETAIL_BYTES;
use valise_proto::{AlertReport, ConversationId, MessageId, Payload, Sha256Digest, UserId};

/// Reports of one alert kind sent per window at most.
pub const REPORTS_PER_WINDOW: u64 = 10;
/// The budget's window: an hour.
pub const WINDOW_MS: i64 = 3_600_000;

impl Engine {
    /// Queues the report of an alert just raised to the pinned desk (see
    /// the module doc), inside the caller's transaction.
    pub(crate) fn report_to_desk(
        &self,
        kind: AlertKind,
        conversation: Option<&ConversationId>,
        detail: &str,
        evidence: Option<&[u8]>,
    ) -> Result<()> {
        let Some(desk) = self.home.security_desk()?.pinned else {
            return Ok(());
        };
        if desk == self.me.user {
            return Ok(());
        }
        let now = self.now_ms();
        let Budget::Report { suppressed } =
            self.home
                .spend_desk_budget(kind.as_str(), now, REPORTS_PER_WINDOW, WINDOW_MS)?
        else {
            return Ok(());
        };
        let report = AlertReport {
            message_id: MessageId::from_bytes(rand::random()),
            kind: kind.as_str().to_owned(),
            at_ms: now,
            conversation: conversation.copied(),
            detail: clip(detail, MAX_DETAIL_BYTES).to_owned(),
            evidence_sha256: evidence
                .map(|e| Sha256Digest(Sha256::digest(e).into()))
                .into_iter()
                .collect(),
            suppressed,
            seq: 0,
            prev: None,
            root: None,
        };
        let entry = Outbound {
            message_id: report.message_id,
            conversation: None,
            exact_to: Some(mls::users_key([&desk, &self.me.user].into_iter())),
            plaintext: Payload::Alert(report).encode()?,
            sealed: None,
            held: Some(format!(
                "an alert report to the security desk {desk}, not sealed yet"
            )),
        };
        self.home.put_outbound(&entry, now)
    }

    /// What this device knows of its security desk.
    pub fn security_desk(&self) -> Result<DeskState> {
        self.home.security_desk()
    }

    /// At enrolment: the desk the server names now (or none) is pinned.
    pub(crate) fn pin_desk(&self, named: Option<&UserId>) -> Result<()> {
        if let Some(named) = named {
            tracing::info!(desk = %named, "security desk pinned");
        }
        self.home.set_security_desk(&DeskState {
            pinned: named.cloned(),
            changed: false,
            offered: None,
        })
    }

    /// The server names `named` as the desk (when asked after enrolment):
    /// alerted once if it differs from the one pinned at enrolment —
    /// including a desk named where none was, which a server could
    /// otherwise use to collect the reports of every device enrolled
    /// before the organisation named its desk; the change forgotten if the
    /// server names the pinned one again.
    pub(crate) fn learn_desk(&self, named: Option<&UserId>) -> Result<()> {
        let mut s = self.home.security_desk()?;
        if named == s.pinned.as_ref() {
            if s.changed {
                (s.changed, s.offered) = (false, None);
                self.home.set_security_desk(&s)?;
            }
            return Ok(());
        }
        if s.changed && s.offered.as_ref() == named {
            return Ok(());
        }
        (s.changed, s.offered) = (true, named.cloned());
        let now = match named {
            Some(n) => format!("names {n} instead"),
            None => "names none any more".to_owned(),
        };
        let detail = match &s.pinned {
            Some(pinned) => format!(
                "the server {now} as the security desk, but this device pinned {pinned}: it keeps \
                 reporting its alerts to {pinned} until you accept the change (`valise desk accept`)"
            ),
            None => format!(
                "the server {now} as the security desk, but none was named when this device \
                 enrolled: it reports its alerts to no desk until you accept the change \
                 (`valise desk accept`)"
            ),
        };
        self.transaction(|| {
            self.home.set_security_desk(&s)?;
            self.raise(AlertKind::SecurityDeskChanged, None, &detail, None)
        })
    }

    /// The user accepts the desk the server names now (after
    /// `security_desk_changed`); returns it.
    pub fn accept_desk(&self) -> Result<Option<UserId>> {
        let mut s = self.home.security_desk()?;
        if !s.changed {
            return Err(ClientError::Invalid(
                "the server names the desk this device reports to: nothing to accept".into(),
            ));
        }
        s = DeskState {
            pinned: s.offered.take(),
            changed: false,
            offered: None,
        };
        self.home.set_security_desk(&s)?;
        tracing::warn!(desk = ?s.pinned, "security desk change accepted");
        Ok(s.pinned)
    }
}

/// The longest prefix of `s` within `max` bytes, cut on a character.
fn clip(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}
