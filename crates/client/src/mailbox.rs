//! Letters kept on the device (inside the sealed database).

use crate::client::{Client, now_ms};
use crate::error::{ClientError, Result};
use rusqlite::types::Type;
use rusqlite::{Connection, OptionalExtension, Row, params};
use serde::Serialize;
use valise_proto::{ConversationId, DeviceAddress, Letter, MessageId, ThreadId, UserId};

/// A letter as `inbox` lists it.
#[derive(Clone, Serialize)]
pub struct LetterSummary {
    pub id: i64,
    pub conversation: ConversationId,
    pub from: UserId,
    pub subject: String,
    pub sent_at_ms: i64,
    pub marking: Option<String>,
}

/// A whole letter as `read` shows it.
#[derive(Clone, Serialize)]
pub struct LetterView {
    pub id: i64,
    pub conversation: ConversationId,
    pub message_id: MessageId,
    pub from: UserId,
    pub from_device: String,
    pub subject: String,
    pub body: String,
    pub to: Vec<UserId>,
    pub thread: ThreadId,
    pub in_reply_to: Option<MessageId>,
    pub sent_at_ms: i64,
    pub received_at_ms: i64,
    pub marking: Option<String>,
    pub outgoing: bool,
}

// Letter content never reaches a log: Debug shows ids only.
impl std::fmt::Debug for LetterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LetterSummary")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for LetterView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LetterView")
            .field("id", &self.id)
            .field("conversation", &self.conversation)
            .field("message_id", &self.message_id)
            .finish_non_exhaustive()
    }
}

/// Stores a letter once; `None` if this sender already sent this id here
/// (a retry or a replay), so nothing is shown twice.
pub(crate) fn store_letter(
    conn: &Connection,
    conv: &ConversationId,
    sender: &DeviceAddress,
    letter: &Letter,
    outgoing: bool,
) -> Result<Option<i64>> {
    let to = serde_json::to_string(&letter.to).map_err(|e| ClientError::Invalid(e.to_string()))?;
    let inserted = conn
        .prepare_cached(
            "INSERT INTO letters (conversation, message_id, sender_user, sender_device, subject,
                 body, recipients, thread, in_reply_to, marking, sent_at_ms, received_at_ms, outgoing)
             VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
             ON CONFLICT (conversation, sender_user, message_id) DO NOTHING",
        )?
        .execute(params![
            conv.to_string(),
            letter.message_id.to_string(),
            sender.user.as_str(),
            sender.device.to_string(),
            letter.subject,
            letter.body,
            to,
            letter.thread.to_string(),
            letter.in_reply_to.map(|m| m.to_string()),
            letter.marking,
            letter.sent_at_ms,
            now_ms(),
            outgoing
        ])?;
    Ok((inserted == 1).then(|| conn.last_insert_rowid()))
}

const COLUMNS: &str = "id, conversation, message_id, sender_user, sender_device, subject, body,
    recipients, thread, in_reply_to, marking, sent_at_ms, received_at_ms, outgoing";

/// Reads a column and parses it into one of our types.
fn col<T, E>(r: &Row<'_>, i: usize, parse: impl FnOnce(&str) -> Result<T, E>) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let s: String = r.get(i)?;
    parse(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

fn view(r: &Row<'_>) -> rusqlite::Result<LetterView> {
    Ok(LetterView {
        id: r.get(0)?,
        conversation: col(r, 1, ConversationId::parse)?,
        message_id: col(r, 2, MessageId::parse)?,
        from: col(r, 3, UserId::parse)?,
        from_device: r.get(4)?,
        subject: r.get(5)?,
        body: r.get(6)?,
        to: col(r, 7, |s| serde_json::from_str(s))?,
        thread: col(r, 8, ThreadId::parse)?,
        in_reply_to: r
            .get::<_, Option<String>>(9)?
            .map(|s| MessageId::parse(&s))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, Type::Text, Box::new(e)))?,
        marking: r.get(10)?,
        sent_at_ms: r.get(11)?,
        received_at_ms: r.get(12)?,
        outgoing: r.get(13)?,
    })
}

impl Client {
    /// The highest letter number counted for this device in that epoch (0: none).
    pub(crate) fn last_letter(
        &self,
        conv: &ConversationId,
        epoch: u64,
        device: &str,
    ) -> Result<u64> {
        let last: i64 = self
            .home
            .conn
            .prepare_cached(
                "SELECT last FROM letter_counters WHERE conversation = ?1 AND epoch = ?2 AND device = ?3",
            )?
            .query_row(params![conv.to_string(), epoch as i64, device], |r| r.get(0))
            .optional()?
            .unwrap_or(0);
        Ok(last as u64)
    }

    /// Letter numbers per conversation, epoch and sending device. To send
    /// (`seen` = None): the next number for this device. On receipt of
    /// number `seen`: the number that was expected next; the highest seen
    /// is kept, so a late letter filling a gap raises nothing again.
    pub(crate) fn count_letter(
        &self,
        conv: &ConversationId,
        epoch: u64,
        device: &str,
        seen: Option<u64>,
    ) -> Result<u64> {
        let last = self.last_letter(conv, epoch, device)?;
        let next = last + 1;
        let stored = seen.map_or(next, |n| n.max(last));
        self.home
            .conn
            .prepare_cached(
                "INSERT INTO letter_counters (conversation, epoch, device, last) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT DO UPDATE SET last = excluded.last",
            )?
            .execute(params![conv.to_string(), epoch as i64, device, stored as i64])?;
        Ok(next)
    }

    /// Letters received, oldest first.
    pub fn inbox(&self) -> Result<Vec<LetterSummary>> {
        self.inbox_after(0)
    }

    /// Letters received with a local id above `after`, oldest first: what
    /// arrived since a front end last looked.
    pub fn inbox_after(&self, after: i64) -> Result<Vec<LetterSummary>> {
        let mut stmt = self.home.conn.prepare_cached(&format!(
            "SELECT {COLUMNS} FROM letters WHERE outgoing = 0 AND id > ?1 ORDER BY id"
        ))?;
        let rows = stmt.query_map([after], |r| {
            view(r).map(|v| LetterSummary {
                id: v.id,
                conversation: v.conversation,
                from: v.from,
                subject: v.subject,
                sent_at_ms: v.sent_at_ms,
                marking: v.marking,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One letter, received or sent.
    pub fn letter(&self, id: i64) -> Result<LetterView> {
        self.home
            .conn
            .query_row(
                &format!("SELECT {COLUMNS} FROM letters WHERE id = ?1"),
                [id],
                view,
            )
            .optional()?
            .ok_or_else(|| ClientError::NotFound {
                kind: "letter",
                id: id.to_string(),
            })
    }
}
