//! Applying what the server delivers, one inbox entry at a time, with no
//! I/O: the entry is trusted for nothing but its bytes.
//!
//! ```text
//! InboxEntry ─▶ MLS message ─┬─ Welcome     → join (every member approved)
//!                            ├─ Commit      → verify, merge (new members approved)
//!                            │    past epoch: own echo │ replay (refused) │ fork (alert)
//!                            │    refused: out of step → follow the hub's side publicly
//!                            └─ Application → decrypt, sender approved → letter
//!                                 or alert report (security desk): numbers
//!                                 (withheld?), directory root (split view?),
//!                                 stored once per (sender, id); a marked
//!                                 letter only if this device is accredited
//!                                 epoch not reached yet → held until its commit
//! ```
//! An entry whose keys no verified lookup has approved yet is undone and
//! answered [`Applied::NeedsProof`]: the caller looks the users up and
//! applies it again. Anything refused leaves nothing behind but an alert:
//! a hostile server must not be able to wedge a device.

use super::Engine;
use super::accreditation::Clearance;
use super::identity::Doubt;
use super::rejoin::Snapshot;
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::mls;
use openmls::framing::errors::{MessageDecryptionError, SecretTreeError};
use openmls::prelude::*;
use std::collections::BTreeMap;
use valise_proto::wire::{Entry as InboxEntry, EntryKind};
use valise_proto::{ConversationId, DeviceAddress, EpochCount, Letter, Payload, UserId};

/// What applying an entry did.
#[derive(Debug)]
pub enum Applied {
    Letter,
    Meta,
    /// An alert report for the security desk, stored (not a letter).
    Report,
    Joined,
    /// A commit merged; `opened`: letters held for its epoch now shown.
    Commit {
        opened: usize,
    },
    /// A letter of an epoch this device has not reached: kept until the
    /// commit that starts it arrives ([`super::held`]).
    Held,
    /// This device's own commit, echoed back after it merged it.
    OwnEcho,
    /// Undone: these users' keys must be proven by the directory first.
    NeedsProof(Vec<(UserId, Doubt)>),
    /// Undone: a marked letter these users' entries, as last proven, do
    /// not accredit them for; to be proven again first (see
    /// [`Engine::clearance`]).
    StaleClearance(Vec<UserId>),
    /// Another commit for an epoch this device already left (refused).
    Fork(Fork),
    /// A letter shown already, sent again by its sender.
    Duplicate,
    /// A marked letter this device is not accredited for: neither shown
    /// nor kept, a `spillage` alert raised ([`super::accreditation`]).
    Spilled,
}

/// Two commits for one epoch: the one this device followed and another.
#[derive(Debug)]
pub struct Fork {
    pub epoch: u64,
    pub followed: [u8; 32],
    pub other: [u8; 32],
}

/// What MLS made of a message, before its content is applied.
enum Opened {
    OwnEcho,
    NeedsProof(Vec<(UserId, Doubt)>),
    /// Merged; the epoch it started.
    Commit(u64),
    Application(DeviceAddress, Vec<u8>),
    /// A letter of an epoch this device has not reached (to be held).
    Ahead,
    Fork(Fork),
}

impl Engine {
    /// Applies one entry inside the caller's transaction; a refused entry
    /// (or one that needs proof first) leaves nothing behind.
    pub fn apply_entry(&self, entry: &InboxEntry) -> Result<Applied> {
        let out = self.home.transaction_keeping(
            || self.apply(entry),
            |a| !matches!(a, Applied::NeedsProof(_) | Applied::StaleClearance(_)),
        );
        if matches!(
            out,
            Err(_) | Ok(Applied::NeedsProof(_) | Applied::StaleClearance(_))
        ) {
            // Undone: the copy in memory may be ahead of the home.
            self.forget_group(&entry.conversation);
        }
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
                self.process(entry, message, own)
            }
            EntryKind::Application => self.process(entry, message, false),
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
                return Err(ClientError::Replayed(format!(
                    "a Welcome to {conv}, of which this device is a member"
                )));
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
        // I5: every member approved by its user, as the directory proves.
        let doubted = self.doubted_members(&mls::roster_keys(&group)?)?;
        if !doubted.is_empty() {
            return Ok(Applied::NeedsProof(doubted));
        }
        let epoch = group.epoch().as_u64();
        self.home
            .put_conversation(conv, "", false, epoch, self.now_ms())?;
        self.home
            .set_members_key(conv, &mls::members_key(&group)?)?;
        self.after_rejoin(conv, &group)?;
        // The leaf came from a key package whose private keys waited in the
        // home since it was made: renewed at once (I3).
        self.home.set_update_due(conv)?;
        Ok(Applied::Joined)
    }

    /// Verifies and applies a commit or application message (`message`:
    /// the entry's, parsed). `own_echo`: the server says this device sent
    /// it (a commit echoed back).
    fn process(
        &self,
        entry: &InboxEntry,
        message: MlsMessageIn,
        own_echo: bool,
    ) -> Result<Applied> {
        let (conv, raw) = (&entry.conversation, entry.message.as_slice());
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
        // The leaf a handshake message says signed it (checked by MLS below).
        let signed_by = match &message {
            ProtocolMessage::PublicMessage(m) => match m.sender() {
                Sender::Member(leaf) => Some(*leaf),
                _ => None,
            },
            ProtocolMessage::PrivateMessage(_) => None,
        };
        let opened = self.with_group(conv, |group, p| {
            if is_commit && message.epoch() < group.epoch() {
                return self.past_commit(conv, epoch, raw, own_echo);
            }
            // A letter of an epoch this device has not reached: its commit
            // is late (a server can reorder), so it waits for it.
            if entry.kind == EntryKind::Application
                && !is_commit
                && message.epoch() > group.epoch()
                && group.is_active()
            {
                return Ok(Opened::Ahead);
            }
            // D3: a commit signed by this very leaf that this device did
            // not make: another copy of this device is in use.
            if is_commit
                && message.epoch() == group.epoch()
                && signed_by == Some(group.own_leaf_index())
                && group.pending_commit().is_none()
            {
                return Err(ClientError::Cloned(format!(
                    "a commit in {conv} is signed by this device's own key, and this device did \
                     not make it"
                )));
            }
            let snapshot = is_commit
                .then(|| Snapshot::of(group, p, &self.signer))
                .transpose()?;
            // Letters of a past epoch still open (MLS keeps a few epochs'
            // secrets): the server may deliver them after the next commit.
            let processed = group.process_message(p, message).map_err(|e| match e {
                ProcessMessageError::ValidationError(ValidationError::UnableToDecrypt(
                    MessageDecryptionError::SecretTreeError(SecretTreeError::SecretReuseError),
                )) => ClientError::Replayed("a letter whose keys this device used already".into()),
                e => ClientError::mls(e),
            })?;
            let sender = mls::device_of(processed.credential())?;
            let external = matches!(processed.sender(), Sender::NewMemberCommit);
            match processed.sender() {
                // The leaf's current key; a past epoch's sender must still hold that leaf.
                Sender::Member(leaf) => {
                    let current = group
                        .member_at(*leaf)
                        .filter(|m| mls::device_of(&m.credential).ok().as_ref() == Some(&sender));
                    match current {
                        // I2: nothing is shown, or merged, from a key the
                        // directory does not hold approved.
                        Some(m) => {
                            let doubted = self.doubted(&[(sender.clone(), m.signature_key)])?;
                            if !doubted.is_empty() {
                                return Ok(Opened::NeedsProof(doubted));
                            }
                        }
                        // A letter of a past epoch whose sender has left since:
                        // MLS checked it against that epoch's leaf; the device
                        // must still be one its user approved (not revoked since).
                        None if epoch < group.epoch().as_u64() => {
                            if let Some(d) = self.device_doubt(&sender)? {
                                return Ok(Opened::NeedsProof(vec![(sender.user.clone(), d)]));
                            }
                        }
                        None => return Err(ClientError::Protocol("sender is not a member".into())),
                    }
                }
                // Someone rejoined as this very device (D3).
                Sender::NewMemberCommit if sender == self.me => {
                    return Err(ClientError::Cloned(format!(
                        "another device rejoined {conv} as this device by external commit"
                    )));
                }
                // A device of the conversation rejoining by external commit
                // (resync); its new key is checked with the roster after the merge.
                Sender::NewMemberCommit
                    if mls::roster(group)?.iter().any(|(_, d)| d == &sender) => {}
                _ => {
                    return Err(ClientError::Protocol(format!(
                        "{sender} is not a member of the conversation"
                    )));
                }
            }
            let root = processed.aad().to_vec();
            match processed.into_content() {
                ProcessedMessageContent::ApplicationMessage(app) => {
                    Ok(Opened::Application(sender, app.into_bytes()))
                }
                ProcessedMessageContent::StagedCommitMessage(staged) => {
                    let before = keys_of(group)?;
                    let policy_before = mls::policy_hash(group.extensions());
                    group
                        .merge_staged_commit(p, *staged)
                        .map_err(ClientError::mls)?;
                    let after = keys_of(group)?;
                    if external && before.keys().ne(after.keys()) {
                        return Err(ClientError::Protocol(format!(
                            "external commit by {sender} changed the members (A15)"
                        )));
                    }
                    // I5: every member that is new, or has a new key, approved.
                    let new: Vec<(DeviceAddress, Vec<u8>)> = after
                        .iter()
                        .filter(|(d, k)| before.get(*d) != Some(*k))
                        .map(|(d, k)| (d.clone(), k.clone()))
                        .collect();
                    let doubted = self.doubted(&new)?;
                    if !doubted.is_empty() {
                        return Ok(Opened::NeedsProof(doubted));
                    }
                    self.after_merge(conv, group, epoch, raw, snapshot)?;
                    self.after_policy_commit(conv, group, &sender, policy_before)?;
                    // Revoked devices left: what they knew is renewed at
                    // once by this device too (the remover's path renewed its own).
                    let revoked_left = before.iter().any(|(d, k)| {
                        !after.contains_key(d)
                            && matches!(self.doubt(d, k), Ok(Some(Doubt::Revoked)))
                    });
                    if revoked_left {
                        self.home.set_update_due(conv)?;
                    }
                    self.check_root(Some(conv), &root)?;
                    Ok(Opened::Commit(group.epoch().as_u64()))
                }
                // Our own commit, echoed after a crash between the hub's
                // acceptance and our merge: the pending commit is the one to merge.
                ProcessedMessageContent::OwnPendingCommit => {
                    let policy_before = mls::policy_hash(group.extensions());
                    group.merge_pending_commit(p).map_err(ClientError::mls)?;
                    self.home.mark_pending_commit(conv, false)?;
                    self.after_merge(conv, group, epoch, raw, snapshot)?;
                    self.home.leaf_renewed(conv, self.now_ms())?;
                    self.after_policy_commit(conv, group, &sender, policy_before)?;
                    Ok(Opened::Commit(group.epoch().as_u64()))
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
            Opened::Commit(now) => Ok(Applied::Commit {
                opened: self.open_held(conv, now)?,
            }),
            Opened::Ahead => {
                self.hold(entry, epoch)?;
                Ok(Applied::Held)
            }
            Opened::Fork(fork) => Ok(Applied::Fork(fork)),
            Opened::Application(sender, bytes) => self.receive(conv, epoch, &sender, &bytes),
        }
    }

    /// What follows every merged commit: the commit that left `epoch` is
    /// remembered (forks), so is the public state left behind (to follow
    /// the other side of a fork), and the roster's users (`send --to`).
    pub(crate) fn after_merge(
        &self,
        conv: &ConversationId,
        group: &MlsGroup,
        epoch: u64,
        raw: &[u8],
        left: Option<Snapshot>,
    ) -> Result<()> {
        self.home.log_commit(conv, epoch, &commit_hash(raw))?;
        if let Some(left) = left {
            self.home
                .put_snapshot(conv, epoch, &left.encode(), mls::MAX_PAST_EPOCHS as u64)?;
        }
        self.home.set_members_key(conv, &mls::members_key(group)?)?;
        if !group.is_active() {
            self.home.set_inactive(conv)?;
        }
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
        let followed = self.home.followed_commit(conv, epoch)?;
        match followed.map(<[u8; 32]>::try_from) {
            Some(Ok(followed)) if followed != other => Ok(Opened::Fork(Fork {
                epoch,
                followed,
                other,
            })),
            // Its own commit, merged already (a crash after the merge).
            Some(_) | None if own_echo => Ok(Opened::OwnEcho),
            Some(_) => Err(ClientError::Replayed(format!(
                "the commit this device followed out of epoch {epoch}"
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
        let mut payload = Payload::decode(plaintext)?;
        if let Some(n) = payload.numbers() {
            self.count_received(conv, epoch, sender, *n.seq, *n.prev)?;
            self.check_root(Some(conv), n.root.as_ref().map_or(&[], |r| &r.0))?;
        }
        // A marked letter carries the policy record: taken (if the group
        // context holds its hash) before the letter is checked against it.
        if let Payload::Letter(Letter {
            policy: Some(record),
            ..
        }) = &payload
        {
            self.receive_policy(conv, sender, record)?;
        }
        // An id seen before in a new MLS message: sent again by its sender
        // (after a fork): one copy is kept.
        match payload {
            Payload::Letter(letter)
                if !self.admit_received(conv, sender, letter.marking.as_ref())? =>
            {
                Ok(Applied::Spilled)
            }
            Payload::Letter(letter) => {
                if let Some(label) = &letter.marking {
                    match self.clearance(conv, sender, label)? {
                        Clearance::Show => {}
                        Clearance::Refused => return Ok(Applied::Spilled),
                        Clearance::Stale(users) => return Ok(Applied::StaleClearance(users)),
                    }
                }
                Ok(
                    match self
                        .home
                        .store_letter(conv, sender, &letter, false, self.now_ms())?
                    {
                        Some(_) => Applied::Letter,
                        None => Applied::Duplicate,
                    },
                )
            }
            // Kept apart from letters, whoever receives it: the reporting
            // device is the MLS sender, whatever the report says.
            Payload::Alert(report) => Ok(
                if self
                    .home
                    .store_report(conv, sender, &report, self.now_ms())?
                {
                    Applied::Report
                } else {
                    Applied::Duplicate
                },
            ),
            Payload::Meta(meta) => {
                self.home.set_meta(conv, &meta.name, meta.direct)?;
                if let Some(record) = &meta.policy {
                    self.receive_policy(conv, sender, record)?;
                }
                Ok(Applied::Meta)
            }
        }
    }

    /// A7: the sender numbers its letters (and alert reports) per epoch; a
    /// gap, or fewer letters of its previous epoch than it says the server
    /// accepted, means the server withheld some from this device.
    fn count_received(
        &self,
        conv: &ConversationId,
        epoch: u64,
        sender: &DeviceAddress,
        seq: u64,
        prev: Option<EpochCount>,
    ) -> Result<()> {
        let expected = self
            .home
            .count_letter(conv, epoch, &sender.device, Some(seq))?;
        if expected == 1 {
            self.check_previous_epoch(conv, sender, prev)?;
        }
        if seq > expected {
            let detail = format!(
                "{} of {sender}'s letters (numbers {expected} to {} of epoch {epoch}) \
                 were never delivered to this device",
                seq - expected,
                seq - 1
            );
            self.raise(AlertKind::LettersWithheld, Some(conv), &detail, None)?;
        }
        Ok(())
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
        let joined = self.home.conversation(conv)?.map_or(0, |c| c.joined_epoch);
        if prev.epoch < joined {
            return Ok(());
        }
        let last = self.home.last_letter(conv, prev.epoch, &sender.device)?;
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
}

/// Each member device's signature key.
fn keys_of(group: &MlsGroup) -> Result<BTreeMap<DeviceAddress, Vec<u8>>> {
    Ok(mls::roster_keys(group)?.into_iter().collect())
}

/// SHA-256 of a commit as delivered: what `epoch_commits` remembers.
pub(crate) fn commit_hash(raw: &[u8]) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    Sha256::digest(raw).into()
}
