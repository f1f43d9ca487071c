//! Sending: a letter is sealed with MLS and written to the outbox in one
//! transaction, then delivered. The sealed bytes are kept until the server
//! accepts them, because the ratchet has moved on: a letter is re-sealed
//! only if the conversation's epoch changed (the server refuses the old one),
//! and every retry carries the same message id, so nothing arrives twice.

use crate::client::{Client, now_ms};
use crate::error::{ClientError, Result};
use crate::mls;
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use valise_proto::api::{MessageAccepted, SendMessage};
use valise_proto::{ConversationId, ErrorCode, Letter, MessageId, Payload, ThreadId, UserId};

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
    plaintext: Vec<u8>,
    epoch: u64,
    ciphertext: Vec<u8>,
}

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
            attachments: Vec::new(),
        }
    }

    async fn post_letter(&mut self, conv: &ConversationId, letter: Letter) -> Result<SentLetter> {
        let message_id = letter.message_id;
        let plaintext = Payload::Letter(letter.clone()).encode()?;
        let id = {
            let tx = self.home.conn.unchecked_transaction()?;
            self.seal(conv, message_id, &plaintext)?;
            let sender = self.me.clone();
            let id = crate::mailbox::store_letter(&tx, conv, &sender, &letter, true)?
                .ok_or_else(|| ClientError::Invalid("duplicate message id".into()))?;
            tx.commit()?;
            id
        };
        self.deliver(message_id).await?;
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
        {
            let tx = self.home.conn.unchecked_transaction()?;
            self.seal(conv, message_id, &plaintext)?;
            tx.commit()?;
        }
        self.deliver(message_id).await
    }

    /// Encrypts at the group's current epoch into the outbox (inside the
    /// caller's transaction, with the ratchet step).
    fn seal(&self, conv: &ConversationId, message_id: MessageId, plaintext: &[u8]) -> Result<()> {
        let p = self.provider();
        let mut group = self.group(&p, conv)?;
        if !group.is_active() {
            return Err(ClientError::Invalid(format!(
                "you are no longer a member of conversation {conv}"
            )));
        }
        let sealed = group
            .create_message(&p, &self.signer, plaintext)
            .map_err(ClientError::mls)?;
        self.home.conn.execute(
            "INSERT INTO outbox (message_id, conversation, plaintext, epoch, ciphertext, created_at_ms)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6)
             ON CONFLICT (message_id) DO UPDATE SET epoch = excluded.epoch, ciphertext = excluded.ciphertext",
            params![
                message_id.to_string(),
                conv.to_string(),
                plaintext,
                group.epoch().as_u64() as i64,
                mls::serialize(&sealed)?,
                now_ms()
            ],
        )?;
        Ok(())
    }

    /// Sends one outbox entry until the server accepts it.
    async fn deliver(&mut self, message_id: MessageId) -> Result<()> {
        for _ in 0..DELIVERY_ATTEMPTS {
            let Some(Outbound {
                conversation: conv,
                plaintext,
                epoch,
                ciphertext,
            }) = self.outbox_entry(message_id)?
            else {
                return Ok(());
            };
            let current = {
                let p = self.provider();
                self.group(&p, &conv)?.epoch().as_u64()
            };
            if current != epoch {
                let tx = self.home.conn.unchecked_transaction()?;
                self.seal(&conv, message_id, &plaintext)?;
                tx.commit()?;
                continue;
            }
            let path = format!("/v1/conversations/{conv}/messages");
            let body = SendMessage {
                client_msg_id: message_id,
                message: ciphertext.into(),
            };
            match self
                .call::<_, MessageAccepted>(Method::POST, &path, Some(&body))
                .await
            {
                Ok(_) => {
                    self.drop_outbox(message_id)?;
                    return Ok(());
                }
                Err(e) if e.is_server(ErrorCode::StaleEpoch) => {
                    self.pull(0).await?;
                }
                Err(e @ ClientError::Network(_)) => {
                    return Err(ClientError::Queued(e.to_string()));
                }
                Err(e @ ClientError::Server(_)) => {
                    // Refused for good (removed, malformed): retrying cannot help.
                    self.drop_outbox(message_id)?;
                    return Err(e);
                }
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Contention)
    }

    /// Delivers what earlier runs sealed but could not send.
    pub(crate) async fn flush_outbox(&mut self) -> Result<usize> {
        let ids: Vec<String> = {
            let mut stmt = self
                .home
                .conn
                .prepare("SELECT message_id FROM outbox ORDER BY created_at_ms")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for id in &ids {
            self.deliver(MessageId::parse(id)?).await?;
        }
        Ok(ids.len())
    }

    fn outbox_entry(&self, message_id: MessageId) -> Result<Option<Outbound>> {
        let row = self
            .home
            .conn
            .query_row(
                "SELECT conversation, plaintext, epoch, ciphertext FROM outbox WHERE message_id = ?1",
                [message_id.to_string()],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, Vec<u8>>(1)?,
                        r.get::<_, i64>(2)?,
                        r.get::<_, Vec<u8>>(3)?,
                    ))
                },
            )
            .optional()?;
        row.map(|(c, plaintext, epoch, ciphertext)| {
            Ok(Outbound {
                conversation: ConversationId::parse(&c)?,
                plaintext,
                epoch: epoch as u64,
                ciphertext,
            })
        })
        .transpose()
    }

    fn drop_outbox(&self, message_id: MessageId) -> Result<()> {
        self.home.conn.execute(
            "DELETE FROM outbox WHERE message_id = ?1",
            [message_id.to_string()],
        )?;
        Ok(())
    }

    fn other_members(&self, conv: &ConversationId) -> Result<Vec<UserId>> {
        let p = self.provider();
        let group = self.group(&p, conv)?;
        let mut users: Vec<UserId> = mls::roster(&group)?
            .into_iter()
            .map(|(_, d)| d.user)
            .filter(|u| u != &self.me.user)
            .collect();
        users.sort();
        users.dedup();
        Ok(users)
    }
}
