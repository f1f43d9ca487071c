//! Sync: pull this device's inbox in order, apply each entry (the engine
//! decides what it believes), remember how far it got, acknowledge; then
//! rejoin what fell out of step, deliver the outbox, and look after the
//! device's keys and its conversations' members.
//!
//! ```text
//! inbox page ──▶ engine.apply_entry, one transaction per page
//!     (an entry whose keys need proving: lookups, then applied again)
//!   inbox cursor := page cursor   (same transaction: a crash re-reads,
//!                                  never re-applies)
//! ──▶ next page, after that cursor (which acknowledges this one)
//! ```
//! An entry that fails verification is skipped and counted, never fatal:
//! a hostile server must not be able to wedge a device. A cursor the
//! server does not know means it was restored from an older copy of its
//! data: the device says so (`server_restored`) and reads from the start.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::engine::identity::Doubt;
use crate::engine::inbound::Applied;
use crate::error::{ClientError, Result};
use reqwest::Method;
use serde::Serialize;
use std::time::{Duration, Instant};
use valise_proto::wire::{self, Entry as InboxEntry, EntryKind, InboxPage};
use valise_proto::{ConversationId, ErrorCode};

/// Entries asked for per page.
const PAGE: usize = 500;

/// How often a long-running client looks after its devices, members, keys
/// and key packages.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// What a sync did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    /// Letters stored for the first time.
    pub new_letters: usize,
    /// Alert reports stored for the first time (on the security desk).
    pub new_reports: usize,
    /// Conversations joined.
    pub joined: usize,
    /// Commits applied (membership changes).
    pub commits: usize,
    /// Entries refused (failed verification, unknown conversation, replays).
    pub rejected: usize,
    /// Devices newly seen in this user's directory entry (each an alert).
    pub new_devices: usize,
    /// The administrator's actions on this account newly logged (each an
    /// `admin_action` alert).
    pub admin_actions: usize,
    /// Own devices added to conversations.
    pub devices_added: usize,
    /// Revoked devices removed from conversations.
    pub devices_removed: usize,
    /// Letters from an earlier run delivered now.
    pub delivered: usize,
    /// Letters still waiting: in the outbox (`valise outbox` says why), or
    /// as drafts whose attachments the server does not hold yet.
    pub held: usize,
    /// Conversations this device had lost track of and rejoined.
    pub rejoined: usize,
    /// Conversations where this device renewed its own keys.
    pub updated: usize,
    /// Entries read again after a server restore that this device had
    /// applied already (no alert: `server_restored` said why).
    pub reread: usize,
    /// Own letters sealed again after a server restore, for the restored
    /// server may have lost them (readers who had them see each once).
    pub resent: usize,
}

/// How far a sync has read the inbox.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncProgress {
    /// Entries read so far.
    pub entries: u64,
    /// Entries waiting when the sync began (if the server said).
    pub total: Option<u64>,
}

impl Client {
    /// Fetches, decrypts and stores everything queued for this device, then
    /// rejoins, delivers the outbox and looks after keys and members.
    pub async fn sync(&mut self) -> Result<SyncReport> {
        self.sync_wait(0).await
    }

    /// As [`Client::sync`], first waiting up to `wait_ms` for something to
    /// arrive, with the home released meanwhile for other processes
    /// ([`Client::release_home`]); if taking it back fails, the error says
    /// so and the home stays released.
    ///
    /// A long-running client looks after devices, members and key packages
    /// at most once per [`HOUSEKEEPING_EVERY`]; a one-shot command always does.
    pub async fn sync_wait(&mut self, wait_ms: u64) -> Result<SyncReport> {
        self.sync_with(wait_ms, &mut |_| {}).await
    }

    /// As [`Client::sync_wait`], calling `progress` after each inbox page
    /// (a device back from a long absence may have 100,000 entries waiting).
    pub async fn sync_with(
        &mut self,
        wait_ms: u64,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<SyncReport> {
        let mut report = self.pull_with(wait_ms, progress).await?;
        report.rejoined = self.resync_diverged().await?;
        if self
            .last_housekeeping
            .is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY)
        {
            self.check_security_desk().await?;
            self.check_authority().await?;
            report.new_devices = self.check_own_history(false).await?;
            report.admin_actions = self.check_admin_actions().await?;
            let (added, removed) = self.refresh_own_conversations().await?;
            report.devices_added = added;
            report.devices_removed = removed;
            report.updated = self.renew_leaves().await?;
            self.restock_key_packages().await?;
            self.last_housekeeping = Some(Instant::now());
        }
        let (delivered, held) = self.deliver_outbox().await?;
        report.delivered = delivered;
        report.held = held;
        Ok(report)
    }

    /// Pulls and applies the inbox, page by page.
    pub(crate) async fn pull(&mut self, wait_ms: u64) -> Result<SyncReport> {
        self.pull_with(wait_ms, &mut |_| {}).await
    }

    /// As [`Client::pull`], reporting progress after each page.
    async fn pull_with(
        &mut self,
        mut wait_ms: u64,
        progress: &mut dyn FnMut(SyncProgress),
    ) -> Result<SyncReport> {
        let mut report = SyncReport::default();
        let mut done = SyncProgress::default();
        // A re-read interrupted by an error ends here: replays alert again.
        self.rereading = false;
        self.engine.begin_inbox_read();
        let mut restored = false;
        loop {
            let cursor = self.engine.home.inbox_cursor()?;
            let count = done.total.is_none();
            let mut path = format!("/v1/inbox?limit={PAGE}&wait_ms={wait_ms}&count={count}");
            if let Some(c) = &cursor {
                path.push_str(&format!("&after={}", hex::encode(c)));
            }
            // A long poll waits with the home released: a command (or the
            // bridge) beside this one is not kept waiting for news. Its
            // answer counts only if nobody read the inbox on meanwhile
            // (else it is read again from where they left it).
            let waiting = wait_ms > 0;
            if waiting {
                self.engine.release()?;
            }
            let fetched = self.call_binary(Method::GET, &path, None).await;
            if waiting {
                self.retake_home().await?;
                if self.engine.home.inbox_cursor()? != cursor {
                    wait_ms = 0;
                    continue;
                }
            }
            let page = match fetched {
                Err(e) if e.is_server(ErrorCode::DeviceRevoked) => {
                    return Err(self.revoked(e)?);
                }
                // Once per pull: a server that does not know the cursors
                // it has just handed out (or one sent without a cursor)
                // lies, and must not keep the device re-reading for ever.
                Err(e)
                    if e.is_server(ErrorCode::UnknownCursor) && cursor.is_some() && !restored =>
                {
                    restored = true;
                    self.server_restored()?;
                    continue;
                }
                other => other?,
            };
            let page = wire::decode_page(&page)
                .map_err(|e| ClientError::Protocol(format!("inbox page: {e}")))?;
            wait_ms = 0;
            if count {
                done.total = page.pending;
            }
            done.entries += page.entries.len() as u64;
            if page.entries.is_empty() {
                if cursor.as_deref() != Some(page.cursor.as_slice()) {
                    self.engine.home.set_inbox_cursor(&page.cursor)?;
                }
                self.engine.whole_inbox_read()?;
                self.rereading = false;
                if self.engine.home.resend_due()? {
                    report.resent = self.resend_after_restore().await?;
                }
                return Ok(report);
            }
            // One transaction per page (one fsync); awaits for directory
            // lookups happen inside it, on this device's only connection.
            self.engine.home.begin()?;
            match self.apply_page(&page, &mut report).await {
                Ok(()) => self.engine.home.end(true)?,
                Err(e) => {
                    self.engine.home.end(false)?;
                    self.engine.forget_groups();
                    return Err(e);
                }
            }
            self.prove_newer_roots().await?;
            self.check_ceilings().await?;
            progress(done);
            if !page.more {
                self.engine.whole_inbox_read()?;
                self.rereading = false;
                if self.engine.home.resend_due()? {
                    report.resent = self.resend_after_restore().await?;
                }
                return Ok(report);
            }
        }
    }

    /// The server did not know this device's cursor: restored from an
    /// older copy of its data. Said once per restore, then read again
    /// from the start (what was applied already is recognised as such).
    fn server_restored(&mut self) -> Result<()> {
        self.rereading = true;
        self.engine.raise(
            AlertKind::ServerRestored,
            None,
            "the server did not recognise how far this device had read: it was restored \
             from an older copy of its data. This device reads its inbox again, and sends \
             again its own letters of each conversation's current epoch, which the \
             restored server may have lost",
            None,
        )?;
        self.engine.home.restart_inbox()
    }

    /// After the server was restored from an older copy of its data (F7):
    /// it may have lost what this device sent since. In each conversation
    /// the hub still at this device's epoch gets the letters of that epoch
    /// sealed again (those of older epochs came before a commit it still
    /// has: the log is one order, the copy holds all before that commit);
    /// one that went back to an older epoch lost a commit too, and is
    /// handled as any rollback, its lost letters sealed again after the
    /// rejoin. Readers who had a letter store its id once, silently.
    async fn resend_after_restore(&mut self) -> Result<usize> {
        let mut resent = 0;
        for conv in self.engine.home.active_conversations()? {
            let ours = self
                .engine
                .with_group(&conv, |group, _| Ok(group.epoch().as_u64()))?;
            let theirs = match self.group_info(&conv).await {
                Ok(hub) => hub.epoch,
                Err(e) if e.is_server(ErrorCode::NotFound) => {
                    self.lost_conversation(&conv, ours)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            if theirs < ours {
                self.rolled_back(&conv, theirs, ours)?;
            } else {
                resent += self
                    .engine
                    .transaction(|| self.engine.reseal_sent(&conv, ours))?;
            }
        }
        // Sealed twice after a crash here: readers store each letter once.
        self.engine.home.resend_done()?;
        Ok(resent)
    }

    /// The restored copy predates the conversation: the hub lost all of
    /// it. Out of step for good (nothing is sealed there), and said.
    fn lost_conversation(&self, conv: &ConversationId, ours: u64) -> Result<()> {
        self.engine.home.mark_diverged(conv, None, ours)?;
        self.engine.raise(
            AlertKind::Rollback,
            Some(conv),
            "the restored server does not know this conversation: its copy of its data is \
             older than the conversation. Nothing more is sealed there; start a new one",
            None,
        )
    }

    /// This device was revoked: said once, as an alert, and as the error.
    fn revoked(&self, e: ClientError) -> Result<ClientError> {
        self.engine.raise(
            AlertKind::DeviceRevoked,
            None,
            "this device was revoked (by another device of yours or by the administrator): \
             it can no longer log in; enrol again with a new invite code",
            None,
        )?;
        Ok(e)
    }

    /// Applies a page's new entries and moves the inbox position past them. An
    /// entry whose keys the directory has not proven yet is undone, the
    /// users are looked up, and it is applied again; refused if still not.
    async fn apply_page(&mut self, page: &InboxPage, report: &mut SyncReport) -> Result<()> {
        // Every entry goes to the engine, which recognises what it applied
        // already: nothing is skipped by a number the server chose.
        for entry in &page.entries {
            let mut outcome = self.engine.apply_entry(entry);
            if let Ok(Applied::NeedsProof(users)) = &outcome {
                for (user, _) in users.clone() {
                    if let Err(e) = self.prove_user(&user).await {
                        tracing::warn!(%user, error = %e, "directory lookup failed");
                    }
                }
                outcome = self.engine.apply_entry(entry);
            }
            if let Ok(Applied::StaleClearance(users)) = &outcome {
                for user in users.clone() {
                    if let Err(e) = self.prove_user(&user).await {
                        tracing::warn!(%user, error = %e, "directory lookup failed");
                    }
                    self.engine.looked_up_this_read(&user);
                }
                outcome = self.engine.apply_entry(entry);
            }
            self.account(entry, outcome, report)?;
        }
        self.engine.home.set_inbox_cursor(&page.cursor)?;
        Ok(())
    }

    /// Counts what an entry did; a refusal becomes an alert (and, for a
    /// commit the hub took, the conversation falls out of step).
    fn account(
        &mut self,
        entry: &InboxEntry,
        outcome: Result<Applied>,
        report: &mut SyncReport,
    ) -> Result<()> {
        let engine = &self.engine;
        match outcome {
            Ok(Applied::Letter) => report.new_letters += 1,
            Ok(Applied::Report) => report.new_reports += 1,
            Ok(Applied::Joined) => report.joined += 1,
            Ok(Applied::Commit { opened }) => {
                report.commits += 1;
                report.new_letters += opened;
            }
            Ok(
                Applied::Meta
                | Applied::OwnEcho
                | Applied::Duplicate
                | Applied::Held
                | Applied::Spilled
                // Proven again and applied once more above: judged then.
                | Applied::StaleClearance(_),
            ) => {}
            Ok(Applied::Fork(fork)) => {
                report.rejected += 1;
                engine.diverge_on_fork(entry, &fork)?;
            }
            Ok(Applied::NeedsProof(users)) => {
                report.rejected += 1;
                let detail = format!(
                    "{:?} (inbox seq {}) refused: {}",
                    entry.kind,
                    entry.seq,
                    Doubt::describe_all(&users)
                );
                engine.raise(
                    AlertKind::KeyNotInDirectory,
                    Some(&entry.conversation),
                    &detail,
                    Some(entry.message.as_slice()),
                )?;
                // The hub took a commit this device refuses: out of step.
                if entry.kind == EntryKind::Commit
                    && engine.home.conversation(&entry.conversation)?.is_some()
                {
                    engine.diverge_on_refused_commit(entry)?;
                }
            }
            Err(ClientError::Cloned(why)) => {
                report.rejected += 1;
                let conv = &entry.conversation;
                engine.raise(
                    AlertKind::DeviceCloned,
                    Some(conv),
                    &format!(
                        "{why}: another copy of this device is in use, as a stolen copy of its \
                         home would be. Revoke this device (`valise devices revoke`, or ask your \
                         administrator) and enrol it anew"
                    ),
                    Some(entry.message.as_slice()),
                )?;
                if engine.home.conversation(conv)?.is_some() {
                    engine.diverge_on_refused_commit(entry)?;
                    engine.home.set_cloned(conv)?;
                }
            }
            Err(ClientError::Replayed(_)) if self.rereading => report.reread += 1,
            Err(e) => {
                report.rejected += 1;
                let detail = format!(
                    "{:?} from {} (inbox seq {}) refused: {e}",
                    entry.kind, entry.sender, entry.seq
                );
                engine.raise(
                    AlertKind::RefusedMessage,
                    Some(&entry.conversation),
                    &detail,
                    Some(entry.message.as_slice()),
                )?;
                // The hub took a commit this device cannot follow: it is
                // out of step until it rejoins.
                if entry.kind == EntryKind::Commit
                    && matches!(e, ClientError::Mls(_))
                    && engine.home.conversation(&entry.conversation)?.is_some()
                {
                    engine.diverge_on_refused_commit(entry)?;
                }
            }
        }
        Ok(())
    }

    /// Moves the ledger to the newer roots members sent. A root the server
    /// cannot prove from this device's view is a split view: alerted (the
    /// failed check alerts itself), the root dropped. A network failure
    /// leaves it for the next sync.
    async fn prove_newer_roots(&mut self) -> Result<()> {
        for root in self.engine.home.member_roots()? {
            match self.accept_root(&root).await {
                Ok(_) | Err(ClientError::Directory(_)) => {}
                Err(e) if e.is_transient() => continue,
                Err(e) => {
                    let epoch = valise_directory::SignedRoot::from_bytes(&root)
                        .map(|r| r.epoch())
                        .unwrap_or_default();
                    let detail = format!(
                        "a member's letter or commit stands on the directory's root of epoch \
                         {epoch}, which the server cannot prove follows from this device's \
                         view ({e}): the server shows members different directories"
                    );
                    self.engine
                        .raise(AlertKind::DirectoryConflict, None, &detail, Some(&root))?;
                }
            }
            self.engine.home.drop_member_root(&root)?;
        }
        Ok(())
    }
}
