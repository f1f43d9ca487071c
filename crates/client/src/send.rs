//! Sending: a letter is sealed with MLS and written to the outbox in one
//! transaction, then delivered. The sealed bytes are kept until the server
//! accepts them, because the ratchet has moved on: a letter is re-sealed
//! only if the conversation's epoch changed (the server refuses the old one),
//! and every retry carries the same message id, so nothing arrives twice.

use crate::alert::AlertKind;
use crate::client::{Client, now_ms};
use crate::error::{ClientError, Result};
use crate::mls;
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use valise_proto::api::{MessageAccepted, SendMessage};
use valise_proto::{
    ConversationId, EpochCount, ErrorCode, Letter, MessageId, Payload, ThreadId, UserId,
};

/// What a user writes; the engine adds ids, thread and time.
#[derive(Clone)]
pub struct Draft {
    pub subject: String,
    pub body: String,
    pub marking: Option<String>,
}

/// A letter this device sent.
#[derive(Debug, Clone, Serialize)]
pub struct SentLetter {
    /// Local id, as `inbox` and `read` show it.
    pub id: i64,
    pub conversation: ConversationId,
    pub message_id: MessageId,
}

/// A sealed message waiting in the outbox.
struct Outbound {
    conversation: ConversationId,
    /// As written: a letter is numbered anew each time it is sealed.
    plaintext: Vec<u8>,
    epoch: u64,
    ciphertext: Vec<u8>,
    /// The letter's number in `epoch` (0: not a letter).
    seq: u64,
}

/// Reads an outbox row from column `at` on: conversation, plaintext,
/// epoch, ciphertext, seq.
fn outbound(r: &rusqlite::Row<'_>, at: usize) -> rusqlite::Result<Outbound> {
    let conv: String = r.get(at)?;
    Ok(Outbound {
        conversation: ConversationId::parse(&conv).map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(at, rusqlite::types::Type::Text, Box::new(e))
        })?,
        plaintext: r.get(at + 1)?,
        epoch: r.get::<_, i64>(at + 2)? as u64,
        ciphertext: r.get(at + 3)?,
        seq: r.get::<_, i64>(at + 4)? as u64,
    })
}

/// Wait before retrying a letter the server refused for its rate limit.
const RATE_LIMIT_PAUSE: std::time::Duration = std::time::Duration::from_millis(250);

/// Delivered outbox entries forgotten per write.
const OUTBOX_DROP_BATCH: usize = 256;

/// Attempts to deliver one sealed message across epoch changes.
const DELIVERY_ATTEMPTS: usize = 5;

impl Client {
    /// Writes to these people: in the conversation that holds exactly them
    /// (and this user), or in a new one.
    pub async fn send_to(&mut self, to: &[UserId], draft: Draft) -> Result<SentLetter> {
        if to.is_empty() {
            return Err(ClientError::Invalid(
                "a letter needs at least one recipient".into(),
            ));
        }
        let conv = match self.direct_conversation(to)? {
            Some(c) => c,
            None => self.create("", to, true).await?,
        };
        let letter = self.new_letter(
            to.to_vec(),
            draft,
            ThreadId::from_bytes(rand::random()),
            None,
        );
        self.post_letter(&conv, letter).await
    }

    /// Starts a new thread in a conversation, addressed to all its members.
    pub async fn send_in(&mut self, conv: &ConversationId, draft: Draft) -> Result<SentLetter> {
        let to = self.other_members(conv)?;
        let letter = self.new_letter(to, draft, ThreadId::from_bytes(rand::random()), None);
        self.post_letter(conv, letter).await
    }

    /// Answers a letter in its conversation and thread.
    pub async fn reply(&mut self, letter_id: i64, body: String) -> Result<SentLetter> {
        let original = self.letter(letter_id)?;
        let subject = if original.subject.to_lowercase().starts_with("re:") {
            original.subject.clone()
        } else {
            format!("Re: {}", original.subject)
        };
        let to = if original.from == self.me.user {
            original.to.clone()
        } else {
            vec![original.from.clone()]
        };
        let draft = Draft {
            subject,
            body,
            marking: original.marking.clone(),
        };
        let letter = self.new_letter(to, draft, original.thread, Some(original.message_id));
        self.post_letter(&original.conversation, letter).await
    }

    fn new_letter(
        &self,
        to: Vec<UserId>,
        draft: Draft,
        thread: ThreadId,
        in_reply_to: Option<MessageId>,
    ) -> Letter {
        Letter {
            message_id: MessageId::from_bytes(rand::random()),
            subject: draft.subject,
            body: draft.body,
            to,
            thread,
            in_reply_to,
            sent_at_ms: now_ms(),
            marking: draft.marking,
            seq: 0,
            prev: None,
            attachments: Vec::new(),
        }
    }

    async fn post_letter(&mut self, conv: &ConversationId, letter: Letter) -> Result<SentLetter> {
        let sent = self.seal_letter(conv, letter)?;
        self.deliver(sent.message_id).await?;
        Ok(sent)
    }

    /// Seals a new thread's letter into the outbox without sending it; the
    /// next [`Client::sync`] delivers it. Load generators use this to
    /// measure the server apart from the sealing.
    pub fn seal_in(&mut self, conv: &ConversationId, draft: Draft) -> Result<SentLetter> {
        let to = self.other_members(conv)?;
        let letter = self.new_letter(to, draft, ThreadId::from_bytes(rand::random()), None);
        self.seal_letter(conv, letter)
    }

    fn seal_letter(&self, conv: &ConversationId, letter: Letter) -> Result<SentLetter> {
        let message_id = letter.message_id;
        let plaintext = Payload::Letter(letter.clone()).encode()?;
        let id = self.transaction(|| {
            self.seal(conv, message_id, &plaintext)?;
            crate::mailbox::store_letter(&self.home.conn, conv, &self.me, &letter, true)?
                .ok_or_else(|| ClientError::Invalid("duplicate message id".into()))
        })?;
        Ok(SentLetter {
            id,
            conversation: *conv,
            message_id,
        })
    }

    /// Seals and delivers a non-letter payload (conversation settings).
    pub(crate) async fn send_payload(
        &mut self,
        conv: &ConversationId,
        payload: &Payload,
    ) -> Result<()> {
        let message_id = MessageId::from_bytes(rand::random());
        let plaintext = payload.encode()?;
        self.transaction(|| self.seal(conv, message_id, &plaintext))?;
        self.deliver(message_id).await
    }

    /// After rejoining from a fork: this device's letters accepted after
    /// the forked epoch went to its side only; seals them again (under new
    /// outbox ids, same letter ids) for the next delivery.
    pub(crate) fn resend_after_fork(&self, conv: &ConversationId) -> Result<usize> {
        let fork: Option<i64> = self
            .home
            .conn
            .query_row(
                "SELECT fork_epoch FROM conversations WHERE id = ?1",
                [conv.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .flatten();
        let Some(fork) = fork else { return Ok(0) };
        let ids: Vec<i64> = {
            let mut stmt = self.home.conn.prepare(
                "SELECT id FROM letters WHERE conversation = ?1 AND outgoing = 1
                 AND sent_epoch > ?2 ORDER BY id",
            )?;
            stmt.query_map(params![conv.to_string(), fork], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        self.transaction(|| {
            for id in &ids {
                let v = self.letter(*id)?;
                let letter = Letter {
                    message_id: v.message_id,
                    subject: v.subject,
                    body: v.body,
                    to: v.to,
                    thread: v.thread,
                    in_reply_to: v.in_reply_to,
                    sent_at_ms: v.sent_at_ms,
                    marking: v.marking,
                    seq: 0,
                    prev: None,
                    attachments: Vec::new(),
                };
                let outbox_id = MessageId::from_bytes(rand::random());
                self.seal(conv, outbox_id, &Payload::Letter(letter).encode()?)?;
            }
            Ok(ids.len())
        })
    }

    /// Encrypts at the group's current epoch into the outbox (inside the
    /// caller's transaction, with the ratchet step).
    fn seal(&self, conv: &ConversationId, message_id: MessageId, plaintext: &[u8]) -> Result<()> {
        let (epoch, seq, sealed) = self.with_group(conv, |group, p| {
            let (numbered, seq) = self.number(conv, group.epoch().as_u64(), plaintext)?;
            if !group.is_active() {
                return Err(ClientError::Invalid(format!(
                    "you are no longer a member of conversation {conv}"
                )));
            }
            if group.pending_commit().is_some() {
                return Err(ClientError::Invalid(format!(
                    "a membership change in {conv} is not confirmed yet: run `valise sync` first"
                )));
            }
            let sealed = group
                .create_message(p, &self.signer, &numbered)
                .map_err(ClientError::mls)?;
            Ok((group.epoch().as_u64(), seq, mls::serialize(&sealed)?))
        })?;
        self.home.conn.prepare_cached(
            "INSERT INTO outbox (message_id, conversation, plaintext, epoch, ciphertext, created_at_ms, seq)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)
             ON CONFLICT (message_id) DO UPDATE
             SET epoch = excluded.epoch, ciphertext = excluded.ciphertext, seq = excluded.seq",
        )?
        .execute(params![
            message_id.to_string(),
            conv.to_string(),
            plaintext,
            epoch as i64,
            sealed,
            now_ms(),
            seq as i64
        ])?;
        Ok(())
    }

    /// Sends one outbox entry until the server accepts it.
    async fn deliver(&mut self, message_id: MessageId) -> Result<()> {
        if let Some(entry) = self.outbox_entry(message_id)? {
            self.deliver_entry(message_id, entry).await?;
            self.drop_outbox(&[message_id])?;
        }
        Ok(())
    }

    /// Gives a letter its number among this device's letters in the
    /// conversation's current epoch (see `Letter::seq`); other payloads
    /// pass unchanged (number 0). A letter re-sealed in a new epoch is renumbered.
    fn number(
        &self,
        conv: &ConversationId,
        epoch: u64,
        plaintext: &[u8],
    ) -> Result<(Vec<u8>, u64)> {
        let Payload::Letter(mut letter) = Payload::decode(plaintext)? else {
            return Ok((plaintext.to_vec(), 0));
        };
        letter.seq = self.count_letter(conv, epoch, &self.me.device.to_string(), None)?;
        letter.prev = self
            .home
            .conn
            .prepare_cached(
                "SELECT epoch, accepted FROM letter_counters
                 WHERE conversation = ?1 AND device = ?2 AND epoch < ?3 AND accepted > 0
                 ORDER BY epoch DESC LIMIT 1",
            )?
            .query_row(
                params![conv.to_string(), self.me.device.to_string(), epoch as i64],
                |r| {
                    Ok(EpochCount {
                        epoch: r.get::<_, i64>(0)? as u64,
                        last: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?;
        let seq = letter.seq;
        Ok((Payload::Letter(letter).encode()?, seq))
    }

    /// A1: the hub fans out to its own roster, which must be the MLS one
    /// at the epoch the letter was sealed in (this device's current one:
    /// the hub took it); any other count means it keeps another list.
    fn check_fan_out(&self, conv: &ConversationId, accepted: &MessageAccepted) -> Result<()> {
        if accepted.duplicate {
            return Ok(());
        }
        let others = self.with_group(conv, |group, _| Ok(group.members().count() - 1))?;
        let queued = accepted.recipients;
        if queued == others as u64 {
            return Ok(());
        }
        let detail = format!(
            "the server queued a letter for {queued} devices, but the conversation has \
             {others} other member devices (MLS roster): its member list differs from the \
             conversation's. Letters are encrypted to the MLS members only"
        );
        self.raise(AlertKind::RosterMismatch, Some(conv), &detail, None)
    }

    /// Counts a letter the server accepted (see `Letter::prev`) and
    /// remembers its epoch (see `Client::resend_after_fork`).
    fn note_accepted(&self, entry: &Outbound) -> Result<()> {
        if entry.seq > 0 {
            if let Payload::Letter(letter) = Payload::decode(&entry.plaintext)? {
                self.home
                    .conn
                    .prepare_cached(
                        "UPDATE letters SET sent_epoch = ?1
                         WHERE conversation = ?2 AND message_id = ?3 AND outgoing = 1",
                    )?
                    .execute(params![
                        entry.epoch as i64,
                        entry.conversation.to_string(),
                        letter.message_id.to_string()
                    ])?;
            }
            self.home
                .conn
                .prepare_cached(
                    "UPDATE letter_counters SET accepted = max(accepted, ?1)
                     WHERE conversation = ?2 AND epoch = ?3 AND device = ?4",
                )?
                .execute(params![
                    entry.seq as i64,
                    entry.conversation.to_string(),
                    entry.epoch as i64,
                    self.me.device.to_string()
                ])?;
        }
        Ok(())
    }

    /// Delivers what was sealed but not yet accepted (earlier failures, or
    /// [`Client::seal_in`]), in sealing order; returns how many.
    pub async fn deliver_outbox(&mut self) -> Result<usize> {
        let queued: Vec<(String, Outbound)> = {
            let mut stmt = self.home.conn.prepare(
                "SELECT message_id, conversation, plaintext, epoch, ciphertext, seq
                 FROM outbox ORDER BY rowid",
            )?;
            stmt.query_map([], |r| Ok((r.get(0)?, outbound(r, 1)?)))?
                .collect::<Result<_, _>>()?
        };
        let total = queued.len();
        let mut delivered = Vec::new();
        for (id, entry) in queued {
            let id = MessageId::parse(&id)?;
            self.deliver_entry(id, entry).await?;
            delivered.push(id);
            if delivered.len() >= OUTBOX_DROP_BATCH {
                self.drop_outbox(&delivered)?;
                delivered.clear();
            }
        }
        self.drop_outbox(&delivered)?;
        Ok(total)
    }

    /// Sends one sealed message until the server accepts it, re-sealing it
    /// if the epoch moved on. It stays in the outbox for the caller to drop.
    async fn deliver_entry(&mut self, message_id: MessageId, mut entry: Outbound) -> Result<()> {
        for _ in 0..DELIVERY_ATTEMPTS {
            let conv = entry.conversation;
            let (current, active) = self.with_group(&conv, |group, _| {
                Ok((group.epoch().as_u64(), group.is_active()))
            })?;
            // Removed while the letter waited (e.g. written while the
            // server was down): it cannot be re-sealed, and kept it would
            // fail every later sync. Refused for good, like a server refusal.
            if !active {
                self.drop_outbox(&[message_id])?;
                return Err(ClientError::Invalid(format!(
                    "you are no longer a member of conversation {conv}: a letter waiting \
                     to be sent there was not delivered"
                )));
            }
            if current != entry.epoch {
                self.transaction(|| self.seal(&conv, message_id, &entry.plaintext))?;
                entry = self
                    .outbox_entry(message_id)?
                    .ok_or_else(|| ClientError::Protocol("outbox entry vanished".into()))?;
                continue;
            }
            let path = format!("/v1/conversations/{conv}/messages");
            let body = SendMessage {
                client_msg_id: message_id,
                message: entry.ciphertext.clone().into(),
            };
            match self
                .call::<_, MessageAccepted>(Method::POST, &path, Some(&body))
                .await
            {
                Ok(accepted) => {
                    self.check_fan_out(&conv, &accepted)?;
                    return self.note_accepted(&entry);
                }
                Err(e) if e.is_server(ErrorCode::StaleEpoch) => {
                    self.pull(0).await?;
                }
                Err(e) if e.is_server(ErrorCode::RateLimited) => {
                    tokio::time::sleep(RATE_LIMIT_PAUSE).await;
                }
                // Transient: the letter stays sealed in the outbox.
                Err(e @ (ClientError::Network(_) | ClientError::Server(_))) if e.is_transient() => {
                    return Err(ClientError::Queued(e.to_string()));
                }
                Err(e @ ClientError::Server(_)) => {
                    // Refused for good (removed, malformed): retrying cannot help.
                    self.drop_outbox(&[message_id])?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Contention)
    }

    fn outbox_entry(&self, message_id: MessageId) -> Result<Option<Outbound>> {
        Ok(self
            .home
            .conn
            .prepare_cached(
                "SELECT conversation, plaintext, epoch, ciphertext, seq FROM outbox WHERE message_id = ?1",
            )?
            .query_row([message_id.to_string()], |r| outbound(r, 0))
            .optional()?)
    }

    /// Forgets delivered messages. This write alone skips the fsync: if
    /// a power cut undoes it, the messages are sent again and the server,
    /// which knows their ids, ignores the duplicates.
    fn drop_outbox(&self, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let conn = &self.home.conn;
        conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let deleted = self.transaction(|| {
            let mut stmt = conn.prepare_cached("DELETE FROM outbox WHERE message_id = ?1")?;
            for id in ids {
                stmt.execute([id.to_string()])?;
            }
            Ok(())
        });
        conn.execute_batch("PRAGMA synchronous = FULL")?;
        deleted
    }

    fn other_members(&self, conv: &ConversationId) -> Result<Vec<UserId>> {
        let mut users: Vec<UserId> = self
            .roster(conv)?
            .into_iter()
            .map(|d| d.user)
            .filter(|u| u != &self.me.user)
            .collect();
        users.dedup();
        Ok(users)
    }
}
