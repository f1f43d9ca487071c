//! Sync: pull this device's inbox in order, apply each entry, remember how
//! far it got, acknowledge.
//!
//! ```text
//! inbox page ──▶ for each entry (one transaction per page):
//!     Welcome      → join the group with the tree the hub kept
//!     Commit       → verify (MLS) and merge; removed → conversation inactive
//!     Application  → decrypt (MLS) → letter record → store once
//!   inbox_seq := last seq        (same transaction: a crash re-reads, never re-applies)
//! ──▶ ack(last seq) ──▶ next page
//! ```
//! An entry that fails verification is skipped and counted, never fatal:
//! a hostile server must not be able to wedge a device.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::mailbox::store_letter;
use crate::mls;
use openmls::prelude::*;
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::BTreeSet;
use std::time::{Duration, Instant};
use valise_proto::api::{
    Ack, Acked, DeviceList, EntryKind, InboxEntry, InboxPage, KeyPackageStock, KeyPackageUpload,
};
use valise_proto::{ConversationId, DeviceAddress, EpochCount, Payload, UserId};

/// Entries asked for per page.
const PAGE: usize = 500;

/// A running client acks at least this often...
const ACK_EVERY: Duration = Duration::from_secs(5);
/// ...or when this many entries are unacknowledged.
const ACK_ENTRIES: u64 = 500;

/// How often a long-running client looks for its user's new devices and
/// restocks its key packages.
pub const HOUSEKEEPING_EVERY: Duration = Duration::from_secs(60);

/// What a sync did.
#[derive(Debug, Default, Clone, Serialize)]
pub struct SyncReport {
    /// Letters stored for the first time.
    pub new_letters: usize,
    /// Conversations joined.
    pub joined: usize,
    /// Commits applied (membership changes).
    pub commits: usize,
    /// Entries refused (failed verification, unknown conversation, replays).
    pub rejected: usize,
    /// Devices newly seen in this user's directory entry (each an alert).
    pub new_devices: usize,
    /// Own devices added to conversations.
    pub devices_added: usize,
    /// Letters from an earlier run delivered now.
    pub delivered: usize,
    /// Conversations this device had lost track of and rejoined.
    pub rejoined: usize,
}

/// How far a sync has read the inbox.
#[derive(Debug, Default, Clone, Copy)]
pub struct SyncProgress {
    /// Entries read so far.
    pub entries: u64,
    /// Entries waiting when the sync began (if the server said).
    pub total: Option<u64>,
}

/// A device of this user as `devices` lists it.
#[derive(Debug, Clone, Serialize)]
pub struct DeviceView {
    pub device: String,
    pub enrolled_at_ms: i64,
    pub this_device: bool,
}

/// What MLS made of a message.
enum Opened {
    OwnEcho,
    NeedsProof(Vec<UserId>),
    Commit,
    Application(DeviceAddress, Vec<u8>),
    Fork(Fork),
}

/// Two commits for one epoch: the one this device followed and another.
struct Fork {
    epoch: u64,
    followed: [u8; 32],
    other: [u8; 32],
}

enum Applied {
    Letter,
    Meta,
    Joined,
    Commit,
    /// This device's own commit, echoed back after it merged it.
    OwnEcho,
    /// Undone: these users' keys must be proven by the directory first.
    NeedsProof(Vec<UserId>),
    /// Another commit for an epoch this device already left (refused).
    Fork(Fork),
    /// A letter shown already, sent again by its sender.
    Duplicate,
}

impl Client {
    /// Fetches, decrypts and stores everything queued for this device, then
    /// delivers the outbox and adds this user's new devices to conversations.
    pub async fn sync(&mut self) -> Result<SyncReport> {
        self.sync_wait(0).await
    }

    /// As [`Client::sync`], first waiting up to `wait_ms` for something to arrive.
    ///
    /// A long-running client checks devices and key packages at most once
    /// per [`HOUSEKEEPING_EVERY`]; a one-shot command always does.
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
        report.delivered = self.deliver_outbox().await?;
        if self
            .last_housekeeping
            .is_none_or(|t| t.elapsed() >= HOUSEKEEPING_EVERY)
        {
            report.new_devices = self.check_own_history(false).await?;
            report.devices_added = match self.add_own_new_devices().await {
                // Refused (and alerted): a device the directory does not
                // hold must not stop this device from syncing.
                Err(ClientError::NotInDirectory(_)) => 0,
                other => other?,
            };
            self.restock_key_packages().await?;
            self.last_housekeeping = Some(Instant::now());
        }
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
        loop {
            let after = self.inbox_seq()?;
            let count = done.total.is_none();
            let path =
                format!("/v1/inbox?after={after}&limit={PAGE}&wait_ms={wait_ms}&count={count}");
            let page: InboxPage = self.call::<(), _>(Method::GET, &path, None).await?;
            wait_ms = 0;
            if count {
                done.total = page.pending;
            }
            done.entries += page.entries.len() as u64;
            let Some(last) = page.entries.last().map(|e| e.seq) else {
                self.discard_unconfirmed_commits()?;
                return Ok(report);
            };
            // One transaction per page (one fsync); awaits for directory
            // lookups happen inside it, on this device's only connection.
            self.home.conn.execute_batch("BEGIN IMMEDIATE")?;
            match self.apply_page(&page, after, &mut report).await {
                Ok(()) => self.home.conn.execute_batch("COMMIT")?,
                Err(e) => {
                    self.home.conn.execute_batch("ROLLBACK")?;
                    self.forget_groups();
                    return Err(e);
                }
            }
            self.ack(last).await?;
            progress(done);
            if !page.more {
                self.discard_unconfirmed_commits()?;
                return Ok(report);
            }
        }
    }

    /// Lets the server delete what this device has stored. Only cleanup:
    /// entries at or below `inbox_seq` are skipped anyway, so a running
    /// client acks at most every [`ACK_EVERY`] or [`ACK_ENTRIES`] entries,
    /// sparing the server a write per wake-up.
    async fn ack(&mut self, up_to: u64) -> Result<()> {
        let due = match self.last_ack {
            None => true,
            Some((seq, at)) => up_to >= seq + ACK_ENTRIES || at.elapsed() >= ACK_EVERY,
        };
        if due {
            let _: Acked = self
                .call(Method::POST, "/v1/inbox/ack", Some(&Ack { up_to }))
                .await?;
            self.last_ack = Some((up_to, Instant::now()));
        }
        Ok(())
    }

    fn inbox_seq(&self) -> Result<u64> {
        let seq: i64 = self
            .home
            .conn
            .query_row("SELECT inbox_seq FROM account", [], |r| r.get(0))?;
        Ok(seq as u64)
    }

    /// Applies a page's new entries and moves `inbox_seq` past them. An
    /// entry whose keys the directory has not proven yet is undone, the
    /// keys are looked up, and it is applied again; refused if still unproven.
    async fn apply_page(
        &mut self,
        page: &InboxPage,
        after: u64,
        report: &mut SyncReport,
    ) -> Result<()> {
        for entry in page.entries.iter().filter(|e| e.seq > after) {
            let mut outcome = self.apply_atomically(entry);
            if let Ok(Applied::NeedsProof(users)) = &outcome {
                for user in users.clone() {
                    if let Err(e) = self.prove_user(&user).await {
                        tracing::warn!(%user, error = %e, "directory lookup failed");
                    }
                }
                outcome = self.apply_atomically(entry);
            }
            match outcome {
                Ok(Applied::Letter) => report.new_letters += 1,
                Ok(Applied::Joined) => report.joined += 1,
                Ok(Applied::Commit) => report.commits += 1,
                Ok(Applied::Meta | Applied::OwnEcho | Applied::Duplicate) => {}
                Ok(Applied::Fork(fork)) => {
                    report.rejected += 1;
                    self.report_fork(entry, &fork)?;
                }
                Ok(Applied::NeedsProof(users)) => {
                    report.rejected += 1;
                    let names: Vec<&str> = users.iter().map(UserId::as_str).collect();
                    let detail = format!(
                        "{:?} (inbox seq {}) refused: a key of {} is not in the key directory",
                        entry.kind,
                        entry.seq,
                        names.join(", ")
                    );
                    self.raise(
                        AlertKind::KeyNotInDirectory,
                        Some(&entry.conversation),
                        &detail,
                        Some(entry.message.as_slice()),
                    )?;
                }
                Err(e) => {
                    report.rejected += 1;
                    // The hub took a commit this device cannot follow: it is
                    // out of step until it rejoins.
                    if entry.kind == EntryKind::Commit && matches!(e, ClientError::Mls(_)) {
                        self.mark_diverged(&entry.conversation, None)?;
                    }
                    let detail = format!(
                        "{:?} from {} (inbox seq {}) refused: {e}",
                        entry.kind, entry.sender, entry.seq
                    );
                    self.raise(
                        AlertKind::RefusedMessage,
                        Some(&entry.conversation),
                        &detail,
                        Some(entry.message.as_slice()),
                    )?;
                }
            }
        }
        if let Some(last) = page.entries.last() {
            self.home
                .conn
                .execute("UPDATE account SET inbox_seq = ?1", [last.seq as i64])?;
        }
        Ok(())
    }

    /// A10: alerts with both commits' hashes (the other as evidence) and
    /// marks the conversation out of step until the next sync checks it.
    fn report_fork(&self, entry: &InboxEntry, fork: &Fork) -> Result<()> {
        let detail = format!(
            "two different commits for epoch {} of this conversation reached this device: \
             it follows {}, the other (from {}, as the server says) is {}. The server \
             accepted both, so members who followed the other no longer share this \
             conversation's keys (a fork): letters between the two sides will not arrive. \
             A device on the side the server does not follow rejoins on its next sync",
            fork.epoch,
            short_hash(&fork.followed),
            entry.sender,
            short_hash(&fork.other),
        );
        self.mark_diverged(&entry.conversation, Some(fork.epoch))?;
        self.raise(
            AlertKind::Fork,
            Some(&entry.conversation),
            &detail,
            Some(entry.message.as_slice()),
        )
    }

    /// The users among these devices whose keys no lookup has proven.
    pub(crate) fn unproven(&self, members: &[(DeviceAddress, Vec<u8>)]) -> Result<Vec<UserId>> {
        let mut users = Vec::new();
        for (device, key) in members {
            if !self.is_proven(device, key)? && !users.contains(&device.user) {
                users.push(device.user.clone());
            }
        }
        Ok(users)
    }

    /// Applies one entry inside the page's transaction; a refused entry
    /// leaves nothing behind (savepoint), so the next one starts clean.
    fn apply_atomically(&self, entry: &InboxEntry) -> Result<Applied> {
        self.home.conn.execute_batch("SAVEPOINT entry")?;
        let out = self.apply(entry);
        if matches!(out, Err(_) | Ok(Applied::NeedsProof(_))) {
            self.home.conn.execute_batch("ROLLBACK TO entry")?;
            self.forget_group(&entry.conversation);
        }
        self.home.conn.execute_batch("RELEASE entry")?;
        out
    }

    fn apply(&self, entry: &InboxEntry) -> Result<Applied> {
        let message = mls::parse_message(entry.message.as_slice())?;
        match entry.kind {
            EntryKind::Welcome => {
                let tree = entry
                    .ratchet_tree
                    .as_ref()
                    .ok_or_else(|| ClientError::Protocol("welcome without ratchet tree".into()))?;
                self.join(&entry.conversation, message, tree.as_slice())
            }
            EntryKind::Commit => {
                let own = entry.sender == self.me;
                self.process(&entry.conversation, message, entry.message.as_slice(), own)
            }
            EntryKind::Application => self.process(
                &entry.conversation,
                message,
                entry.message.as_slice(),
                false,
            ),
        }
    }

    fn join(&self, conv: &ConversationId, message: MlsMessageIn, tree: &[u8]) -> Result<Applied> {
        let MlsMessageBodyIn::Welcome(welcome) = message.extract() else {
            return Err(ClientError::Protocol(
                "welcome entry is not a Welcome".into(),
            ));
        };
        let p = self.provider();
        self.forget_group(conv);
        if let Some(mut old) = mls::load_group(&p, conv)? {
            if old.is_active() {
                return Err(ClientError::Protocol(format!("already a member of {conv}")));
            }
            // Re-added after a removal: the old state has no further use.
            old.delete(p.storage()).map_err(ClientError::mls)?;
        }
        let group = StagedWelcome::new_from_welcome(
            &p,
            &mls::join_config(),
            welcome,
            Some(mls::parse_tree(tree)?),
        )
        .map_err(ClientError::mls)?
        .into_group(&p)
        .map_err(ClientError::mls)?;
        if group.group_id().as_slice() != conv.as_bytes() {
            return Err(ClientError::Protocol(
                "welcome for another conversation".into(),
            ));
        }
        if group.ciphersuite() != mls::CIPHERSUITE {
            return Err(ClientError::Mls(format!(
                "refusing conversation with ciphersuite {:?}",
                group.ciphersuite()
            )));
        }
        let unproven = self.unproven(&mls::roster_keys(&group)?)?;
        if !unproven.is_empty() {
            return Ok(Applied::NeedsProof(unproven));
        }
        self.home.conn.execute(
            "INSERT INTO conversations (id, name, created_at_ms, joined_epoch) VALUES (?1, '', ?2, ?3)
             ON CONFLICT (id) DO UPDATE SET active = 1, diverged = 0, joined_epoch = excluded.joined_epoch",
            params![
                conv.to_string(),
                crate::client::now_ms(),
                group.epoch().as_u64() as i64
            ],
        )?;
        Ok(Applied::Joined)
    }

    /// Verifies and applies a commit or application message (`raw`: its
    /// bytes). `own_echo`: the server says this device sent it (a commit
    /// echoed back).
    fn process(
        &self,
        conv: &ConversationId,
        message: MlsMessageIn,
        raw: &[u8],
        own_echo: bool,
    ) -> Result<Applied> {
        let message = message
            .try_into_protocol_message()
            .map_err(ClientError::mls)?;
        if message.group_id().as_slice() != conv.as_bytes() {
            return Err(ClientError::Protocol(
                "message for another conversation".into(),
            ));
        }
        let epoch = message.epoch().as_u64();
        let is_commit = message.content_type() == ContentType::Commit;
        let opened = self.with_group(conv, |group, p| {
            if is_commit && message.epoch() < group.epoch() {
                return self.past_commit(conv, epoch, raw, own_echo);
            }
            // Letters of a past epoch still open (MLS keeps a few epochs'
            // secrets): the server may deliver them after the next commit.
            let processed = group
                .process_message(p, message)
                .map_err(ClientError::mls)?;
            let sender = mls::device_of(processed.credential())?;
            // An external commit may only bring back a device of the
            // conversation (resync), leaving the members as they were.
            let rejoin_of: Option<BTreeSet<DeviceAddress>> =
                matches!(processed.sender(), Sender::NewMemberCommit)
                    .then(|| mls::roster(group))
                    .transpose()?
                    .map(|r| r.into_iter().map(|(_, d)| d).collect());
            match processed.sender() {
                // The leaf's current key; a past epoch's sender must still hold that leaf.
                Sender::Member(leaf) => {
                    let current = group
                        .member_at(*leaf)
                        .filter(|m| mls::device_of(&m.credential).ok().as_ref() == Some(&sender));
                    match current {
                        // I2: nothing is shown, or merged, from a key the directory does not hold.
                        Some(m) => {
                            let unproven = self.unproven(&[(sender.clone(), m.signature_key)])?;
                            if !unproven.is_empty() {
                                return Ok(Opened::NeedsProof(unproven));
                            }
                        }
                        // A letter of a past epoch whose sender has left since:
                        // MLS checked it against that epoch's leaf, and every
                        // roster this device merged was proven then (I5).
                        None if epoch < group.epoch().as_u64() => {}
                        None => return Err(ClientError::Protocol("sender is not a member".into())),
                    }
                }
                // A device of the conversation rejoining by external commit
                // (resync); its new key is proven with the roster after the merge.
                Sender::NewMemberCommit
                    if rejoin_of.as_ref().is_some_and(|r| r.contains(&sender)) => {}
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "{sender} is not a member of the conversation"
                    )));
                }
            }
            match processed.into_content() {
                ProcessedMessageContent::ApplicationMessage(app) => {
                    Ok(Opened::Application(sender, app.into_bytes()))
                }
                ProcessedMessageContent::StagedCommitMessage(staged) => {
                    group
                        .merge_staged_commit(p, *staged)
                        .map_err(ClientError::mls)?;
                    self.log_commit(conv, epoch, raw)?;
                    let after: BTreeSet<DeviceAddress> =
                        mls::roster(group)?.into_iter().map(|(_, d)| d).collect();
                    if rejoin_of.is_some_and(|before| before != after) {
                        return Err(ClientError::Protocol(format!(
                            "external commit by {sender} changed the members (A15)"
                        )));
                    }
                    // I5: no member whose key the directory does not hold.
                    let unproven = self.unproven(&mls::roster_keys(group)?)?;
                    if !unproven.is_empty() {
                        return Ok(Opened::NeedsProof(unproven));
                    }
                    if !group.is_active() {
                        self.home.conn.execute(
                            "UPDATE conversations SET active = 0 WHERE id = ?1",
                            [conv.to_string()],
                        )?;
                    }
                    Ok(Opened::Commit)
                }
                // Our own commit, echoed after a crash between the hub's
                // acceptance and our merge: the pending commit is the one to merge.
                ProcessedMessageContent::OwnPendingCommit => {
                    group.merge_pending_commit(p).map_err(ClientError::mls)?;
                    self.mark_pending(conv, false)?;
                    self.log_commit(conv, epoch, raw)?;
                    Ok(Opened::Commit)
                }
                ProcessedMessageContent::OwnPrivateMessage => Err(ClientError::Protocol(
                    "own message reflected back by the server".into(),
                )),
                // Valise commits proposals inline; a standalone one is not queued.
                ProcessedMessageContent::ProposalMessage(_)
                | ProcessedMessageContent::ExternalJoinProposalMessage(_) => Err(
                    ClientError::Protocol("standalone proposals are not accepted".into()),
                ),
            }
        })?;
        match opened {
            Opened::OwnEcho => Ok(Applied::OwnEcho),
            Opened::NeedsProof(users) => Ok(Applied::NeedsProof(users)),
            Opened::Commit => Ok(Applied::Commit),
            Opened::Fork(fork) => Ok(Applied::Fork(fork)),
            Opened::Application(sender, bytes) => self.receive(conv, epoch, &sender, &bytes),
        }
    }

    /// Remembers the commit with which this device left `epoch`.
    pub(crate) fn log_commit(&self, conv: &ConversationId, epoch: u64, raw: &[u8]) -> Result<()> {
        self.home
            .conn
            .prepare_cached(
                "INSERT OR REPLACE INTO epoch_commits (conversation, epoch, commit_hash)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![
                conv.to_string(),
                epoch as i64,
                commit_hash(raw).as_slice()
            ])?;
        Ok(())
    }

    /// A commit for an epoch this device already left: its own echo, a
    /// replay (the same commit: refused), or a fork (another commit).
    fn past_commit(
        &self,
        conv: &ConversationId,
        epoch: u64,
        raw: &[u8],
        own_echo: bool,
    ) -> Result<Opened> {
        let other = commit_hash(raw);
        let followed: Option<Vec<u8>> = self
            .home
            .conn
            .prepare_cached(
                "SELECT commit_hash FROM epoch_commits WHERE conversation = ?1 AND epoch = ?2",
            )?
            .query_row(params![conv.to_string(), epoch as i64], |r| r.get(0))
            .optional()?;
        match followed.map(<[u8; 32]>::try_from) {
            Some(Ok(followed)) if followed != other => Ok(Opened::Fork(Fork {
                epoch,
                followed,
                other,
            })),
            // Its own commit, merged already (a crash after the merge).
            Some(_) | None if own_echo => Ok(Opened::OwnEcho),
            Some(_) => Err(ClientError::Protocol(format!(
                "commit for epoch {epoch} replayed"
            ))),
            None => Err(ClientError::Protocol(format!(
                "commit for past epoch {epoch}"
            ))),
        }
    }

    fn receive(
        &self,
        conv: &ConversationId,
        epoch: u64,
        sender: &DeviceAddress,
        plaintext: &[u8],
    ) -> Result<Applied> {
        match Payload::decode(plaintext)? {
            Payload::Letter(letter) => {
                let device = sender.device.to_string();
                let expected = self.count_letter(conv, epoch, &device, Some(letter.seq))?;
                if expected == 1 {
                    self.check_previous_epoch(conv, sender, letter.prev)?;
                }
                if letter.seq > expected {
                    let detail = format!(
                        "{} of {sender}'s letters (numbers {expected} to {} of epoch {epoch}) \
                         were never delivered to this device",
                        letter.seq - expected,
                        letter.seq - 1
                    );
                    self.raise(AlertKind::LettersWithheld, Some(conv), &detail, None)?;
                }
                // A letter id seen before in a new MLS message: sent again
                // by its sender (after a fork): one copy is shown.
                Ok(
                    match store_letter(&self.home.conn, conv, sender, &letter, false)? {
                        Some(_) => Applied::Letter,
                        None => Applied::Duplicate,
                    },
                )
            }
            Payload::Meta(meta) => {
                self.home.conn.execute(
                    "UPDATE conversations SET name = ?1 WHERE id = ?2",
                    params![meta.name, conv.to_string()],
                )?;
                if meta.direct {
                    self.set_direct_key(conv)?;
                }
                Ok(Applied::Meta)
            }
        }
    }

    /// On a sender's first letter of an epoch: did this device get every
    /// letter the sender says the server accepted in its previous epoch?
    fn check_previous_epoch(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        prev: Option<EpochCount>,
    ) -> Result<()> {
        let Some(prev) = prev else { return Ok(()) };
        let joined: i64 = self
            .home
            .conn
            .prepare_cached("SELECT joined_epoch FROM conversations WHERE id = ?1")?
            .query_row([conv.to_string()], |r| r.get(0))?;
        if prev.epoch < joined as u64 {
            return Ok(());
        }
        let last = self.last_letter(conv, prev.epoch, &sender.device.to_string())?;
        if last < prev.last {
            let detail = format!(
                "{} of {sender}'s letters (numbers {} to {} of epoch {}, its last there) \
                 were never delivered to this device",
                prev.last - last,
                last + 1,
                prev.last,
                prev.epoch
            );
            self.raise(AlertKind::LettersWithheld, Some(conv), &detail, None)?;
        }
        Ok(())
    }

    /// Keeps enough one-time key packages on the server for others to add
    /// this device.
    async fn restock_key_packages(&mut self) -> Result<()> {
        let empty = KeyPackageUpload {
            one_time: Vec::new(),
            last_resort: None,
        };
        let stock: KeyPackageStock = self
            .call(Method::PUT, "/v1/devices/self/key-packages", Some(&empty))
            .await?;
        if stock.one_time >= mls::KEY_PACKAGE_LOW_WATER {
            return Ok(());
        }
        if stock.one_time == 0 {
            self.raise(
                AlertKind::KeyPackagesExhausted,
                None,
                "no one-time key packages were left on the server: anyone adding this \
                 device meanwhile used its last-resort package (restocking now)",
                None,
            )?;
        }
        let upload = self.transaction(|| {
            let p = self.provider();
            let one_time = (0..mls::KEY_PACKAGE_BATCH)
                .map(|_| mls::key_package(&p, &self.signer, &self.me, false).map(Into::into))
                .collect::<Result<Vec<_>>>()?;
            Ok(KeyPackageUpload {
                one_time,
                last_resort: None,
            })
        })?;
        let _: KeyPackageStock = self
            .call(Method::PUT, "/v1/devices/self/key-packages", Some(&upload))
            .await?;
        Ok(())
    }

    /// This user's enrolled devices, as the server lists them.
    pub async fn devices(&mut self) -> Result<Vec<DeviceView>> {
        let path = format!("/v1/users/{}/devices", self.me.user);
        let list: DeviceList = self.call::<(), _>(Method::GET, &path, None).await?;
        Ok(list
            .devices
            .into_iter()
            .map(|d| DeviceView {
                device: d.device.to_string(),
                enrolled_at_ms: d.enrolled_at_ms,
                this_device: d.device == self.me.device,
            })
            .collect())
    }
}

/// SHA-256 of a commit as delivered: what `epoch_commits` remembers.
fn commit_hash(raw: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(raw).into()
}

/// The first bytes of a hash, in hex, for people to compare.
fn short_hash(hash: &[u8; 32]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
