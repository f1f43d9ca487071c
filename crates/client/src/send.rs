//! Sending: a letter is sealed with MLS and written to the outbox in one
//! transaction (or held there, see [`crate::engine::outbound`]), then
//! delivered. Sealed bytes are kept until the server accepts them, because
//! the ratchet has moved on: a letter is sealed again only if the
//! conversation's epoch changed (the server refuses the old one), and every
//! retry carries the same message id, so nothing arrives twice.

use crate::alert::AlertKind;
use crate::api::Body;
use crate::attachments::AttachmentSource;
use crate::client::Client;
use crate::engine::outbound::{Target, Written};
use crate::error::{ClientError, Result};
use crate::home::outbox::Outbound;
use reqwest::Method;
use serde::Serialize;
use std::time::Duration;
use valise_proto::limits::MAX_REQUEST_BYTES;
use valise_proto::wire::{
    self, CONTENT_TYPE, LETTERS_HEADER, MAX_BATCH_LETTERS, Outcome, OutgoingLetter,
};
use valise_proto::{
    ConversationId, ErrorCode, Label, Letter, MessageId, Problem, ThreadId, UserId,
};

/// What a user writes; the engine adds ids, thread and time.
#[derive(Clone)]
pub struct Draft {
    pub subject: String,
    pub body: String,
    pub marking: Option<Label>,
    /// Files to attach: each is encrypted and uploaded as a blob before
    /// the letter goes (see [`crate::attachments`]).
    pub attachments: Vec<AttachmentSource>,
    /// The letter's id; `None` for a new random one. A front end that must
    /// know a retry of one mail for the letter it became (the bridge's
    /// SMTP) chooses it, and notes it before the letter is written.
    pub message_id: Option<MessageId>,
}

/// A letter this device sent.
#[derive(Debug, Clone, Serialize)]
pub struct SentLetter {
    /// Local id, as `inbox` and `read` show it.
    pub id: i64,
    /// `None` while a `send --to` letter waits for its conversation.
    pub conversation: Option<ConversationId>,
    pub message_id: MessageId,
}

/// Wait before retrying a letter the server refused for its rate limit,
/// when it did not say how long.
const RATE_LIMIT_PAUSE: Duration = Duration::from_millis(250);
/// Shortest wait before a retry, whatever the server asks.
const MIN_RATE_LIMIT_PAUSE: Duration = Duration::from_millis(50);
/// Longest a delivery waits for the rate limit in all before the letter is
/// left queued for the next sync.
const MAX_RATE_LIMIT_WAIT: Duration = Duration::from_secs(60);

/// Delivered outbox entries forgotten per write.
const OUTBOX_DROP_BATCH: usize = 256;

/// Attempts to deliver one sealed message across epoch changes.
const DELIVERY_ATTEMPTS: usize = 5;

/// Sealed outbox entries sent in one request: at most
/// [`MAX_BATCH_LETTERS`], and well under the server's request limit.
#[derive(Default)]
struct Batch {
    entries: Vec<Outbound>,
    bytes: usize,
}

impl Batch {
    /// Bytes of ciphertext per request, leaving room for framing.
    const MAX_BYTES: usize = MAX_REQUEST_BYTES / 2;

    fn size(entry: &Outbound) -> usize {
        entry.sealed.as_ref().map_or(0, |s| s.ciphertext.len()) + 64
    }

    fn fits(&self, entry: &Outbound) -> bool {
        self.entries.is_empty()
            || (self.entries.len() < MAX_BATCH_LETTERS
                && self.bytes + Self::size(entry) <= Self::MAX_BYTES)
    }

    fn push(&mut self, entry: Outbound) {
        self.bytes += Self::size(&entry);
        self.entries.push(entry);
    }
}

impl Client {
    /// Writes to exactly these people: in the conversation `send --to` made
    /// for exactly them and this user (if its roster still holds exactly
    /// them), or in a new one. A letter that cannot go now (an identity
    /// changed, the conversation out of step) waits in the outbox.
    pub async fn send_to(&mut self, to: &[UserId], mut draft: Draft) -> Result<SentLetter> {
        if to.is_empty() {
            return Err(ClientError::Invalid(
                "a letter needs at least one recipient".into(),
            ));
        }
        let files = std::mem::take(&mut draft.attachments);
        let letter = self.new_letter(
            to.to_vec(),
            draft,
            ThreadId::from_bytes(rand::random()),
            None,
        );
        let target = Target::Exactly {
            users: to.to_vec(),
            conversation: None,
        };
        self.post_with(target, letter, &files).await
    }

    /// Starts a new thread in a conversation, addressed to all its members.
    pub async fn send_in(&mut self, conv: &ConversationId, mut draft: Draft) -> Result<SentLetter> {
        let to = self.engine.other_members(conv)?;
        let files = std::mem::take(&mut draft.attachments);
        let letter = self.new_letter(to, draft, ThreadId::from_bytes(rand::random()), None);
        self.post_with(Target::Conversation(*conv), letter, &files)
            .await
    }

    /// Posts a letter, its attachments uploaded first when it has any.
    async fn post_with(
        &mut self,
        target: Target,
        letter: Letter,
        files: &[AttachmentSource],
    ) -> Result<SentLetter> {
        if files.is_empty() {
            self.post_letter(target, letter).await
        } else {
            self.post_with_attachments(target, letter, files).await
        }
    }

    /// Answers a letter in its conversation and thread. The answer carries
    /// the thread's highest marking, or `marking` if given, which must
    /// dominate every marking of the thread: a reply may raise the marking,
    /// never lower it.
    pub async fn reply(
        &mut self,
        letter_id: i64,
        body: String,
        marking: Option<Label>,
    ) -> Result<SentLetter> {
        let original = self.engine.home.letter(letter_id)?;
        let subject = if original.subject.to_lowercase().starts_with("re:") {
            original.subject.clone()
        } else {
            format!("Re: {}", original.subject)
        };
        let draft = Draft {
            message_id: None,
            subject,
            body,
            marking,
            attachments: Vec::new(),
        };
        self.reply_with(letter_id, draft).await
    }

    /// Answers a letter in its conversation and thread with a draft of
    /// the writer's own (a mail client's reply keeps its own subject). The
    /// marking rule of [`Client::reply`] applies to the draft's marking.
    pub async fn reply_with(&mut self, letter_id: i64, mut draft: Draft) -> Result<SentLetter> {
        let original = self.engine.home.letter(letter_id)?;
        let thread = self
            .engine
            .home
            .thread_markings(&original.conversation, &original.thread)?;
        draft.marking = crate::handling::inherited(&thread, draft.marking)?;
        let to = if original.from == self.engine.me.user {
            original.to.clone()
        } else {
            vec![original.from.clone()]
        };
        let files = std::mem::take(&mut draft.attachments);
        let letter = self.new_letter(to, draft, original.thread, Some(original.message_id));
        self.post_with(Target::Conversation(original.conversation), letter, &files)
            .await
    }

    /// Stores the letter (nothing written is lost from here on), brings
    /// the conversation up to date, seals and delivers. A marked letter is
    /// taken back, with an `unaccredited_recipient` alert, if a device of
    /// the conversation is not accredited for its marking. A letter that must
    /// wait is an error that says why, the letter staying in the outbox; a
    /// network failure leaves it queued for the next sync.
    pub(crate) async fn post_letter(
        &mut self,
        target: Target,
        letter: Letter,
    ) -> Result<SentLetter> {
        let id = self.engine.write_letter(&target, &letter)?;
        self.post_written(target, letter.message_id, letter.marking.as_ref(), id)
            .await
    }

    /// Delivers a letter written as `id` (see [`Client::post_letter`]).
    pub(crate) async fn post_written(
        &mut self,
        target: Target,
        message_id: MessageId,
        marking: Option<&Label>,
        id: i64,
    ) -> Result<SentLetter> {
        let conversation = match (self.prepare(&target).await, &target) {
            (Ok(c), _) => c,
            (Err(e), _) if e.is_transient() => return Err(ClientError::Queued(e.to_string())),
            // Members not checked against the directory (a revoked device
            // could still be in): it waits, and is tried on the next sync.
            (Err(e), Target::Conversation(_)) => {
                return Err(ClientError::Held(format!(
                    "the conversation's members could not be checked against the key \
                     directory ({e})"
                )));
            }
            // Nobody it could ever go to (no such person, no device, a key
            // the directory does not hold): taken back, as if never written.
            (Err(e), Target::Exactly { .. }) => {
                self.engine.withdraw_letter(&message_id, id)?;
                return Err(e);
            }
        };
        // The ceiling of the conversation it goes in, now that it is known:
        // a letter it refuses is taken back, as if never written.
        if let Some(conv) = &conversation
            && let Err(e) = self.engine.check_ceiling(conv, marking)
        {
            self.engine.withdraw_letter(&message_id, id)?;
            return Err(e);
        }
        if let (Some(conv), Some(label)) = (&conversation, marking)
            && let Err(e) = self.check_marked(conv, label).await
        {
            // Refused, not held: the person decides what to do instead.
            if let ClientError::Unaccredited { .. } = e {
                self.engine.withdraw_letter(&message_id, id)?;
                self.engine.raise(
                    AlertKind::UnaccreditedRecipient,
                    Some(conv),
                    &e.to_string(),
                    None,
                )?;
            }
            return Err(e);
        }
        let mut entry = self
            .engine
            .home
            .outbound(&message_id)?
            .ok_or_else(|| ClientError::Protocol("outbox entry vanished".into()))?;
        entry.conversation = conversation;
        if let Written::Held(why) = self
            .engine
            .transaction(|| self.engine.seal_or_hold(entry))?
        {
            return Err(ClientError::Held(why));
        }
        self.deliver(message_id).await?;
        Ok(SentLetter {
            id,
            conversation,
            message_id,
        })
    }

    /// Whether every device of `conv` is accredited for `label`, every
    /// member's accreditations read afresh from the directory (one granted
    /// or withdrawn a moment ago counts).
    async fn check_marked(&mut self, conv: &ConversationId, label: &Label) -> Result<()> {
        let users: std::collections::BTreeSet<UserId> = self
            .engine
            .roster(conv)?
            .into_iter()
            .map(|d| d.user)
            .collect();
        for user in &users {
            self.prove_user(user).await?;
        }
        self.engine.check_marked(conv, label)
    }

    /// The conversation a letter goes in, its members brought in line with
    /// the directory first (new approved devices in, revoked ones out).
    async fn prepare(&mut self, target: &Target) -> Result<Option<ConversationId>> {
        match target {
            Target::Conversation(conv) => {
                self.check_members(conv).await?;
                Ok(Some(*conv))
            }
            Target::Exactly { users, .. } => self.conversation_for(users).await,
        }
    }

    /// The conversation a `send --to` letter to `to` goes in: the direct one
    /// for exactly them, its members brought up to date, or a new one.
    /// `None` while nothing may be written to them (an identity changed).
    async fn conversation_for(&mut self, to: &[UserId]) -> Result<Option<ConversationId>> {
        for user in to {
            self.prove_user(user).await?;
            if !self.engine.may_write_to(user)? {
                return Ok(None);
            }
        }
        if let Some(c) = self.engine.direct_conversation(to)? {
            self.check_members(&c).await?;
            // Refreshing may have changed who is in it.
            if self.engine.direct_conversation(to)? == Some(c) {
                return Ok(Some(c));
            }
        }
        Ok(Some(self.create("", to, true, None).await?))
    }

    pub(crate) fn new_letter(
        &self,
        to: Vec<UserId>,
        draft: Draft,
        thread: ThreadId,
        in_reply_to: Option<MessageId>,
    ) -> Letter {
        Letter {
            message_id: draft
                .message_id
                .unwrap_or_else(|| MessageId::from_bytes(rand::random())),
            subject: draft.subject,
            body: draft.body,
            to,
            thread,
            in_reply_to,
            sent_at_ms: self.engine.now_ms(),
            marking: draft.marking,
            seq: 0,
            prev: None,
            root: None,
            attachments: Vec::new(),
            policy: None,
        }
    }

    /// Seals a new thread's letter into the outbox without sending it; the
    /// next [`Client::sync`] delivers it. Load generators use this to
    /// measure the server apart from the sealing.
    pub fn seal_in(&mut self, conv: &ConversationId, draft: Draft) -> Result<SentLetter> {
        self.engine.check_ceiling(conv, draft.marking.as_ref())?;
        let to = self.engine.other_members(conv)?;
        let letter = self.new_letter(to, draft, ThreadId::from_bytes(rand::random()), None);
        let id = self
            .engine
            .write_letter(&Target::Conversation(*conv), &letter)?;
        let entry = self
            .engine
            .home
            .outbound(&letter.message_id)?
            .ok_or_else(|| ClientError::Protocol("outbox entry vanished".into()))?;
        if let Written::Held(why) = self
            .engine
            .transaction(|| self.engine.seal_or_hold(entry))?
        {
            return Err(ClientError::Held(why));
        }
        Ok(SentLetter {
            id,
            conversation: Some(*conv),
            message_id: letter.message_id,
        })
    }

    /// Sends one outbox entry until the server accepts it.
    pub(crate) async fn deliver(&mut self, message_id: MessageId) -> Result<()> {
        if let Some(entry) = self.engine.home.outbound(&message_id)? {
            self.deliver_entry(entry).await?;
            self.engine.home.drop_outbound(&[message_id])?;
        }
        Ok(())
    }

    /// Delivers what was sealed but not yet accepted (earlier failures, or
    /// [`Client::seal_in`]) in the order written, and tries again what
    /// waits unsealed; returns (delivered, still waiting).
    pub async fn deliver_outbox(&mut self) -> Result<(usize, usize)> {
        // Letters whose attachments were still uploading go first; those
        // that still wait count as held.
        let drafts = self.finish_drafts().await?;
        let mut delivered = Vec::new();
        let (mut total, mut held) = (0, 0);
        let outcome = self
            .deliver_each(&mut delivered, &mut total, &mut held)
            .await;
        // What was accepted leaves the outbox even when a later letter
        // failed: sent again, it would be numbered anew in another epoch.
        total += delivered.len();
        self.engine.home.drop_outbound(&delivered)?;
        outcome.map(|()| (total, held + drafts))
    }

    async fn deliver_each(
        &mut self,
        delivered: &mut Vec<MessageId>,
        total: &mut usize,
        held: &mut usize,
    ) -> Result<()> {
        let mut batch = Batch::default();
        for entry in self.engine.home.outbox()? {
            let Some(entry) = self.release(entry).await? else {
                *held += 1;
                continue;
            };
            if !batch.fits(&entry) {
                self.deliver_batch(std::mem::take(&mut batch), delivered)
                    .await?;
            }
            batch.push(entry);
            if delivered.len() >= OUTBOX_DROP_BATCH {
                *total += delivered.len();
                self.engine.home.drop_outbound(delivered)?;
                delivered.clear();
            }
        }
        self.deliver_batch(batch, delivered).await
    }

    /// Sends a batch of sealed entries in one request, the accepted ones
    /// noted in one transaction. When the conversation moved on (stale
    /// epoch), this device reads its inbox, seals the rest again and sends
    /// them again as a batch; any other refusal goes one by one through
    /// [`Client::deliver_entry`], which says why. Adds the delivered ids
    /// to `delivered`; the first error stops.
    async fn deliver_batch(&mut self, batch: Batch, delivered: &mut Vec<MessageId>) -> Result<()> {
        let mut entries = batch.entries;
        let (mut attempts, mut waited) = (0, Duration::ZERO);
        while entries.len() > 1 && attempts < DELIVERY_ATTEMPTS {
            let mut ready = Vec::with_capacity(entries.len());
            for entry in entries {
                ready.push(self.fresh(entry)?);
            }
            entries = ready;
            let letters = entries.iter().map(outgoing).collect::<Result<Vec<_>>>()?;
            let outcomes = match self.post_letters(&letters).await {
                Ok(o) => o,
                Err(e) if e.is_server(ErrorCode::RateLimited) => {
                    pause(&e, &mut waited).await?;
                    continue;
                }
                Err(e) if e.is_transient() => return Err(ClientError::Queued(e.to_string())),
                Err(e) => return Err(e),
            };
            attempts += 1;
            let (mut accepted, mut rest, mut stale) = (Vec::new(), Vec::new(), false);
            for (entry, outcome) in entries.into_iter().zip(outcomes) {
                match outcome {
                    Ok(recipients) => accepted.push((entry, recipients)),
                    Err(e) => {
                        if e.is_server(ErrorCode::StaleEpoch)
                            && let (Some(conv), Some(sealed)) = (&entry.conversation, &entry.sealed)
                        {
                            self.stale_epoch(conv, sealed.epoch, &e)?;
                            stale = true;
                        }
                        rest.push(entry);
                    }
                }
            }
            for (entry, recipients) in &accepted {
                if let Some(conv) = &entry.conversation {
                    self.check_fan_out(conv, *recipients)?;
                }
            }
            self.engine.transaction(|| {
                accepted
                    .iter()
                    .try_for_each(|(entry, _)| self.engine.note_accepted(entry))
            })?;
            delivered.extend(accepted.iter().map(|(e, _)| e.message_id));
            tracing::debug!(
                accepted = accepted.len(),
                left = rest.len(),
                stale,
                "letters batch answered"
            );
            entries = rest;
            if !stale {
                break;
            }
            self.pull(0).await?;
        }
        for entry in entries {
            let id = entry.message_id;
            self.deliver_entry(entry).await?;
            delivered.push(id);
        }
        Ok(())
    }

    /// An entry ready to send: sealed in its conversation's current epoch
    /// (sealed again if the epoch moved). `Held` if it must wait; refused
    /// for good (and dropped) if this device left the conversation.
    fn fresh(&self, entry: Outbound) -> Result<Outbound> {
        let (Some(conv), Some(sealed)) = (entry.conversation, entry.sealed.as_ref()) else {
            return Err(ClientError::Held(
                entry.held.unwrap_or_else(|| "not sealed".into()),
            ));
        };
        let current = self
            .engine
            .with_group(&conv, |group, _| Ok(group.epoch().as_u64()));
        let row = self.engine.home.conversation(&conv)?;
        // Removed while the letter waited (e.g. written while the server
        // was down): it cannot be sealed again, and kept it would fail
        // every later sync. Refused for good, like a server refusal.
        if row.as_ref().is_none_or(|r| !r.active) {
            self.engine.home.drop_outbound(&[entry.message_id])?;
            return Err(ClientError::Invalid(format!(
                "you are no longer a member of conversation {conv}: a letter waiting \
                 to be sent there was not delivered"
            )));
        }
        if current? == sealed.epoch {
            return Ok(entry);
        }
        let id = entry.message_id;
        if let Written::Held(why) = self
            .engine
            .transaction(|| self.engine.seal_or_hold(entry))?
        {
            return Err(ClientError::Held(why));
        }
        self.engine
            .home
            .outbound(&id)?
            .ok_or_else(|| ClientError::Protocol("outbox entry vanished".into()))
    }

    /// A held entry sealed now if it may be (its conversation found or made
    /// for a `send --to` letter); `None` while it still waits.
    async fn release(&mut self, entry: Outbound) -> Result<Option<Outbound>> {
        if entry.held.is_none() {
            return Ok(Some(entry));
        }
        let mut entry = entry;
        if entry.conversation.is_none()
            && let Some(users) = entry.exact_to.as_deref().map(recipients)
        {
            let others: Vec<UserId> = users?
                .into_iter()
                .filter(|u| u != &self.engine.me.user)
                .collect();
            entry.conversation = match self.conversation_for(&others).await {
                Ok(c) => c,
                Err(e) if e.is_transient() => return Err(e),
                // Not now (nobody to add yet): it waits, and is tried again.
                Err(e) => {
                    tracing::warn!(error = %e, "a letter waits for its conversation");
                    return Ok(None);
                }
            };
        }
        if let Some(conv) = entry.conversation {
            match self.check_members(&conv).await {
                Ok(()) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(conversation = %conv, error = %e, "members not checked; the letter waits");
                    return Ok(None);
                }
            }
        }
        let id = entry.message_id;
        Ok(
            match self
                .engine
                .transaction(|| self.engine.seal_or_hold(entry))?
            {
                Written::Sealed => self.engine.home.outbound(&id)?,
                Written::Held(_) => None,
            },
        )
    }

    /// Sends one sealed entry until the server accepts it, sealing it again
    /// if the epoch moved on. It stays in the outbox for the caller to drop.
    async fn deliver_entry(&mut self, mut entry: Outbound) -> Result<()> {
        let (mut attempts, mut waited) = (0, Duration::ZERO);
        while attempts < DELIVERY_ATTEMPTS {
            entry = self.fresh(entry)?;
            let letter = outgoing(&entry)?;
            let (conv, epoch) = (
                letter.conversation,
                entry.sealed.as_ref().map_or(0, |s| s.epoch),
            );
            match self.post_letters(&[letter]).await.map(|mut o| o.pop()) {
                Ok(Some(Ok(recipients))) => {
                    self.check_fan_out(&conv, recipients)?;
                    return self.engine.note_accepted(&entry);
                }
                Ok(Some(Err(e))) | Err(e) if e.is_server(ErrorCode::StaleEpoch) => {
                    attempts += 1;
                    self.stale_epoch(&conv, epoch, &e)?;
                    self.pull(0).await?;
                }
                Err(e) if e.is_server(ErrorCode::RateLimited) => pause(&e, &mut waited).await?,
                // Transient: the letter stays sealed in the outbox.
                Ok(Some(Err(e))) | Err(e @ (ClientError::Network(_) | ClientError::Server(_)))
                    if e.is_transient() =>
                {
                    return Err(ClientError::Queued(e.to_string()));
                }
                Ok(Some(Err(e @ ClientError::Server(_)))) | Err(e @ ClientError::Server(_)) => {
                    // Refused for good (removed, malformed): retrying cannot help.
                    self.engine.home.drop_outbound(&[entry.message_id])?;
                    return Err(e);
                }
                Ok(Some(Err(e))) | Err(e) => return Err(e),
                Ok(None) => {
                    return Err(ClientError::Protocol(
                        "the server answered no letter".into(),
                    ));
                }
            }
        }
        Err(ClientError::Contention)
    }

    /// Sends a batch of letters; each gets its own answer: the devices it
    /// was (or, for a retry, would now be) queued for, or the server's
    /// refusal as an error.
    async fn post_letters(
        &mut self,
        letters: &[OutgoingLetter],
    ) -> Result<Vec<std::result::Result<FanOut, ClientError>>> {
        let body = Body::new(CONTENT_TYPE, wire::encode_letters(letters))
            .header(LETTERS_HEADER, letters.len().to_string());
        let answer = self
            .call_binary(Method::POST, "/v1/letters", Some(body))
            .await?;
        let outcomes = wire::decode_outcomes(&answer, letters.len())
            .map_err(|e| ClientError::Protocol(format!("letters: {e}")))?;
        Ok(outcomes
            .into_iter()
            .map(|o| match o {
                Outcome::Accepted { recipients, .. } => Ok(FanOut {
                    recipients,
                    epoch: None,
                }),
                Outcome::Duplicate { recipients, epoch } => Ok(FanOut {
                    recipients,
                    epoch: Some(epoch),
                }),
                Outcome::StaleEpoch { current } => {
                    let mut p = Problem::new(
                        ErrorCode::StaleEpoch,
                        format!("the conversation is at epoch {current}"),
                    );
                    p.current_epoch = Some(current);
                    Err(ClientError::Server(p))
                }
                Outcome::Refused { code, message } => {
                    Err(ClientError::Server(Problem::new(code, message)))
                }
                Outcome::Skipped => Err(ClientError::Server(Problem::new(
                    ErrorCode::Unknown,
                    "skipped: an earlier letter of its conversation was not accepted",
                ))),
            })
            .collect())
    }

    /// A `stale_epoch` answer naming an epoch older than the one this
    /// device sealed in: see [`Client::rolled_back`].
    fn stale_epoch(&self, conv: &ConversationId, ours: u64, e: &ClientError) -> Result<()> {
        let ClientError::Server(p) = e else {
            return Ok(());
        };
        match p.current_epoch.filter(|t| *t < ours) {
            Some(theirs) => self.rolled_back(conv, theirs, ours),
            None => Ok(()),
        }
    }

    /// The hub is at epoch `theirs`, older than one this device already
    /// shared with the others: an honest hub never goes back, so the server
    /// was restored or rolled back. The conversation is out of step
    /// (nothing more is sealed there until it is whole again, and then this
    /// device's letters accepted from `theirs` on are sealed again: the hub
    /// may have lost them) and the person is told.
    pub(crate) fn rolled_back(&self, conv: &ConversationId, theirs: u64, ours: u64) -> Result<()> {
        // Letters of epoch `theirs` itself may be lost too.
        let kept = theirs.checked_sub(1);
        self.engine.home.mark_diverged(conv, kept, ours)?;
        self.engine.home.set_update_due(conv)?;
        let detail = format!(
            "the server says this conversation is at epoch {theirs}, but this device already \
             shared epoch {ours} with the others: the server's state was rolled back. Nothing \
             more is sealed there until it is whole again"
        );
        self.engine
            .raise(AlertKind::Rollback, Some(conv), &detail, None)
    }

    /// A1: the hub fans out to its own roster, which must be the MLS one
    /// at the epoch the letter was sealed in (this device's current one:
    /// the hub took it); any other count means it keeps another list.
    fn check_fan_out(&self, conv: &ConversationId, fan_out: FanOut) -> Result<()> {
        let queued = fan_out.recipients;
        let (epoch, others) = self.engine.with_group(conv, |group, _| {
            Ok((group.epoch().as_u64(), group.members().count() - 1))
        })?;
        // A retry answered for another epoch than this device's: nothing
        // to compare until it catches up (the next letter is checked).
        if fan_out.epoch.is_some_and(|e| e != epoch) || queued as usize == others {
            return Ok(());
        }
        let detail = format!(
            "the server queued a letter for {queued} devices, but the conversation has \
             {others} other member devices (MLS roster): its member list differs from the \
             conversation's. Letters are encrypted to the MLS members only"
        );
        self.engine
            .raise(AlertKind::RosterMismatch, Some(conv), &detail, None)
    }
}

/// What the server says a letter was fanned out to: `recipients` other
/// devices, at the letter's epoch (accepted) or at the conversation's
/// `epoch` now (a retry of one accepted before).
#[derive(Debug, Clone, Copy)]
struct FanOut {
    recipients: u32,
    epoch: Option<u64>,
}

/// The letter a sealed entry sends.
fn outgoing(entry: &Outbound) -> Result<OutgoingLetter> {
    match (entry.conversation, &entry.sealed) {
        (Some(conversation), Some(sealed)) => Ok(OutgoingLetter {
            conversation,
            client_msg_id: entry.message_id,
            message: sealed.ciphertext.clone(),
        }),
        _ => Err(ClientError::Held(
            entry.held.clone().unwrap_or_else(|| "not sealed".into()),
        )),
    }
}

/// Waits as long as a `rate_limited` answer asks (bounded); past
/// [`MAX_RATE_LIMIT_WAIT`] in all the letter stays queued.
async fn pause(e: &ClientError, waited: &mut Duration) -> Result<()> {
    let asked = match e {
        ClientError::Server(p) => p.retry_after_ms.map(Duration::from_millis),
        _ => None,
    };
    // Never less than a floor: a server answering 0 must not make the
    // device hammer it.
    let pause = asked
        .unwrap_or(RATE_LIMIT_PAUSE)
        .clamp(MIN_RATE_LIMIT_PAUSE, MAX_RATE_LIMIT_WAIT);
    if *waited + pause > MAX_RATE_LIMIT_WAIT {
        return Err(ClientError::Queued(e.to_string()));
    }
    *waited += pause;
    tokio::time::sleep(pause).await;
    Ok(())
}

/// The users of an `exact_to` key.
pub(crate) fn recipients(key: &str) -> Result<Vec<UserId>> {
    key.split(',')
        .filter(|u| !u.is_empty())
        .map(|u| Ok(UserId::parse(u)?))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rate_limited(retry_after_ms: Option<u64>) -> ClientError {
        let mut p = Problem::new(ErrorCode::RateLimited, "slow down");
        p.retry_after_ms = retry_after_ms;
        ClientError::Server(p)
    }

    /// A server answering "retry in 0 ms" cannot make a device hammer it:
    /// every pause is at least the floor, and they end in `queued`.
    #[tokio::test(start_paused = true)]
    async fn pauses_have_a_floor_and_an_end() {
        let mut waited = Duration::ZERO;
        let mut pauses = 0;
        while pause(&rate_limited(Some(0)), &mut waited).await.is_ok() {
            pauses += 1;
        }
        assert_eq!(
            pauses as u128,
            MAX_RATE_LIMIT_WAIT.as_millis() / MIN_RATE_LIMIT_PAUSE.as_millis()
        );
        let mut waited = Duration::ZERO;
        pause(&rate_limited(Some(3_000)), &mut waited)
            .await
            .unwrap();
        assert_eq!(waited, Duration::from_secs(3));
    }
}
