//! Letters that arrive before the commit that starts their epoch.
//!
//! The hub orders a conversation's commits and letters, but the server is
//! not trusted to deliver them in that order: a letter of epoch n+1 may
//! reach a device still at epoch n. Refusing it would lose it for good (a
//! reordering a hostile server could use to make letters vanish without a
//! `letters_withheld` alert), so it is kept in the home, as delivered,
//! and applied like a fresh entry right after a commit brings the
//! conversation to its epoch — in the same transaction as that commit.
//!
//! ```text
//! letter, epoch > group's ─▶ held (home)      ── survives restarts
//! commit merged, epoch e  ─▶ held for ≤ e, in order of arrival ─▶ applied
//!                              refused then ─▶ alert, dropped
//! more than MAX_HELD_LETTERS / MAX_HELD_BYTES held ─▶ oldest dropped, alert
//! ```
//! The hub queues a commit before any letter of the epoch it starts, so a
//! letter still held once the whole inbox was read waits for a commit the
//! server has not delivered: that is said once, in a `letters_withheld`
//! alert (unless the conversation is out of step, which was alerted and
//! explains it). Such a letter stays until its commit comes or the bound
//! pushes it out (a `refused_message` alert carrying the message); one
//! whose epoch the device passed without reaching it (a rejoin) is tried
//! after the next commit and refused then.

use super::Engine;
use super::identity::Doubt;
use super::inbound::Applied;
use crate::alert::AlertKind;
use crate::error::Result;
use crate::home::held::Held;
use valise_proto::ConversationId;
use valise_proto::limits::MAX_MLS_MESSAGE_BYTES;
use valise_proto::wire::Entry as InboxEntry;

/// Most letters one conversation holds for commits that have not come.
pub const MAX_HELD_LETTERS: u64 = 1000;
/// Most bytes of messages one conversation holds (a few of the largest
/// letters, thousands of ordinary ones).
pub const MAX_HELD_BYTES: u64 = 16 * 1024 * 1024;
// The largest message fits, so the newest letter is always kept.
const _: () = assert!(MAX_HELD_BYTES >= MAX_MLS_MESSAGE_BYTES as u64);

impl Engine {
    /// Keeps `entry`, a letter for `epoch`, making room within the bounds
    /// by dropping the conversation's oldest held letters (each alerted).
    pub(super) fn hold(&self, entry: &InboxEntry, epoch: u64) -> Result<()> {
        let conv = &entry.conversation;
        let size = entry.message.as_slice().len() as u64;
        loop {
            let (count, bytes) = self.home.held_size(conv)?;
            if count < MAX_HELD_LETTERS && bytes + size <= MAX_HELD_BYTES {
                break;
            }
            let Some(oldest) = self.home.drop_oldest_held(conv)? else {
                break;
            };
            let why = format!(
                "it waited for the commit that starts epoch {}, which never came, and more \
                 than {MAX_HELD_LETTERS} letters or {} MiB wait in this conversation: the \
                 server may be withholding a commit",
                oldest.epoch,
                MAX_HELD_BYTES >> 20
            );
            self.refuse_held(&oldest, AlertKind::RefusedMessage, &why)?;
        }
        tracing::info!(conversation = %conv, epoch, seq = entry.seq, "letter held for its commit");
        self.home.hold(entry, epoch)
    }

    /// After a commit brought `conv` to `epoch`: applies the letters held
    /// for it (or an earlier one), in order of arrival, each undone alone
    /// if refused. Returns how many were shown.
    pub(super) fn open_held(&self, conv: &ConversationId, epoch: u64) -> Result<usize> {
        let mut shown = 0;
        for held in self.home.take_reached(conv, epoch)? {
            let mut outcome = self.apply_entry(&held.entry);
            // No lookup can be made here: judged on the entries it holds.
            if let Ok(Applied::StaleClearance(users)) = &outcome {
                users.iter().for_each(|u| self.proven_this_read(u));
                outcome = self.apply_entry(&held.entry);
            }
            match outcome {
                Ok(Applied::Letter) => shown += 1,
                Ok(Applied::NeedsProof(users)) => {
                    let why = Doubt::describe_all(&users);
                    self.refuse_held(&held, AlertKind::KeyNotInDirectory, &why)?;
                }
                Ok(_) => {}
                Err(e) => self.refuse_held(&held, AlertKind::RefusedMessage, &e.to_string())?,
            }
        }
        Ok(shown)
    }

    /// After a read of the whole inbox: letters still held, not alerted
    /// yet, wait for a commit the server withholds (see the module doc).
    pub(super) fn alert_still_held(&self) -> Result<()> {
        for (conv, count, epoch) in self.home.alert_held()? {
            if self.home.conversation(&conv)?.is_some_and(|c| c.diverged) {
                continue;
            }
            let detail = format!(
                "{count} letters wait for the commit that starts epoch {epoch} of this \
                 conversation, which the server has not delivered to this device although it \
                 delivered letters of that epoch: it may be withholding that commit. They \
                 open if it comes"
            );
            self.raise(AlertKind::LettersWithheld, Some(&conv), &detail, None)?;
        }
        Ok(())
    }

    fn refuse_held(&self, held: &Held, kind: AlertKind, why: &str) -> Result<()> {
        let e = &held.entry;
        let detail = format!(
            "letter for epoch {} from {} (inbox seq {}), held for its commit, refused: {why}",
            held.epoch, e.sender, e.seq
        );
        self.raise(
            kind,
            Some(&e.conversation),
            &detail,
            Some(e.message.as_slice()),
        )
    }
}
