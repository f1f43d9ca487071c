//! Letters kept on the device (inside the sealed database), and the
//! numbers that show letters the server withheld. A letter's label is
//! kept as its text (`Label`'s `Display`, which `Label::parse` reads back).

use super::{Home, parse_col};
use crate::error::{ClientError, Result};
use rusqlite::types::Type;
use rusqlite::{OptionalExtension, Row, params};
use serde::Serialize;
use valise_proto::blob::AttachmentRef;
use valise_proto::{
    ConversationId, DeviceAddress, DeviceId, EpochCount, Label, Letter, MessageId, ThreadId, UserId,
};

/// A letter as `inbox` lists it.
#[derive(Clone, Serialize)]
pub struct LetterSummary {
    pub id: i64,
    pub conversation: ConversationId,
    pub from: UserId,
    pub subject: String,
    pub sent_at_ms: i64,
    pub marking: Option<Label>,
    /// Why only a stub was kept (see [`Home::store_withheld`]).
    pub withheld: Option<String>,
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
    pub marking: Option<Label>,
    pub outgoing: bool,
    /// Shown as index (from 1), name, media type and size; the keys and
    /// blob ids stay inside.
    #[serde(serialize_with = "attachment_list")]
    pub attachments: Vec<AttachmentRef>,
    /// Why only a stub was kept (see [`Home::store_withheld`]).
    pub withheld: Option<String>,
}

/// What `read` shows of an attachment (never its key or blob id). No
/// Debug: its name and media type are the letter's content.
#[derive(Serialize)]
pub struct AttachmentInfo<'a> {
    /// From 1, as `save --attachment` takes it.
    pub index: usize,
    pub name: &'a str,
    pub media_type: &'a str,
    pub size: u64,
}

/// Each attachment as `read` shows it.
pub fn attachment_infos(refs: &[AttachmentRef]) -> Vec<AttachmentInfo<'_>> {
    refs.iter()
        .enumerate()
        .map(|(i, a)| AttachmentInfo {
            index: i + 1,
            name: &a.name,
            media_type: &a.media_type,
            size: a.size,
        })
        .collect()
}

fn attachment_list<S: serde::Serializer>(refs: &[AttachmentRef], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(attachment_infos(refs))
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

impl LetterView {
    /// The letter as written, to be sealed again (after a fork): numbers
    /// are given anew at sealing.
    pub fn to_letter(&self) -> Letter {
        Letter {
            message_id: self.message_id,
            subject: self.subject.clone(),
            body: self.body.clone(),
            to: self.to.clone(),
            thread: self.thread,
            in_reply_to: self.in_reply_to,
            sent_at_ms: self.sent_at_ms,
            marking: self.marking.clone(),
            seq: 0,
            prev: None,
            root: None,
            attachments: self.attachments.clone(),
            policy: None,
        }
    }
}

/// The columns [`view`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, conversation, message_id, sender_user, sender_device, subject, body, recipients, \
         thread, in_reply_to, marking, sent_at_ms, received_at_ms, outgoing, withheld"
    };
}

/// Stores a letter once per (conversation, sender user, message id).
pub(super) const STORE: &str = "INSERT INTO letters (conversation, message_id, sender_user,
        sender_device, subject, body, recipients, thread, in_reply_to, marking, sent_at_ms,
        received_at_ms, outgoing)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)
    ON CONFLICT (conversation, sender_user, message_id) DO NOTHING";
/// The inbox listing: received letters after a local id.
pub(super) const INBOX_AFTER: &str = concat!(
    "SELECT ",
    columns!(),
    " FROM letters WHERE outgoing = 0 AND id > ?1 ORDER BY id"
);
pub(super) const BY_ID: &str = concat!("SELECT ", columns!(), " FROM letters WHERE id = ?1");
/// A withheld letter's subject (after its marking's prefix).
pub const WITHHELD_SUBJECT: &str = "(withheld)";
pub(super) const WITHHOLD: &str = "UPDATE letters SET withheld = ?1 WHERE id = ?2";
/// All three columns of the unique index: one row, no scan.
pub(super) const NOTE_SENT_EPOCH: &str = "UPDATE letters SET sent_epoch = ?1
    WHERE conversation = ?2 AND sender_user = ?3 AND message_id = ?4";
pub(super) const NOTE_ACCEPTED_COUNT: &str =
    "UPDATE letter_counters SET accepted = max(accepted, ?1)
     WHERE conversation = ?2 AND epoch = ?3 AND device = ?4";
pub(super) const FILE_LETTER: &str = "UPDATE letters SET conversation = ?1
    WHERE message_id = ?2 AND sender_user = ?3 AND outgoing = 1 AND conversation != ?1";
pub(super) const LAST_LETTER: &str =
    "SELECT last FROM letter_counters WHERE conversation = ?1 AND epoch = ?2 AND device = ?3";
pub(super) const COUNT_LETTER: &str =
    "INSERT INTO letter_counters (conversation, epoch, device, last) VALUES (?1, ?2, ?3, ?4)
     ON CONFLICT DO UPDATE SET last = excluded.last";
/// On the partial index of accepted counts (migration 0007): the walk back
/// over earlier epochs touches only this device's epochs with letters.
pub(super) const LAST_ACCEPTED_BEFORE: &str = "SELECT epoch, accepted FROM letter_counters
    WHERE conversation = ?1 AND device = ?2 AND epoch < ?3 AND accepted > 0
    ORDER BY epoch DESC LIMIT 1";

fn view(r: &Row<'_>) -> rusqlite::Result<LetterView> {
    Ok(LetterView {
        id: r.get(0)?,
        conversation: parse_col(r, 1, ConversationId::parse)?,
        message_id: parse_col(r, 2, MessageId::parse)?,
        from: parse_col(r, 3, UserId::parse)?,
        from_device: r.get(4)?,
        subject: r.get(5)?,
        body: r.get(6)?,
        to: parse_col(r, 7, |s| serde_json::from_str(s))?,
        thread: parse_col(r, 8, ThreadId::parse)?,
        in_reply_to: r
            .get::<_, Option<String>>(9)?
            .map(|s| MessageId::parse(&s))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(9, Type::Text, Box::new(e)))?,
        marking: r
            .get::<_, Option<String>>(10)?
            .map(|s| Label::parse(&s))
            .transpose()
            .map_err(|e| rusqlite::Error::FromSqlConversionFailure(10, Type::Text, Box::new(e)))?,
        sent_at_ms: r.get(11)?,
        received_at_ms: r.get(12)?,
        outgoing: r.get(13)?,
        attachments: Vec::new(),
        withheld: r.get(14)?,
    })
}

impl Home {
    /// Stores a letter once; `None` if this sender already sent this id
    /// here (a retry, a replay, or a letter sent again after a fork), so
    /// nothing is shown twice.
    pub fn store_letter(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        letter: &Letter,
        outgoing: bool,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let to =
            serde_json::to_string(&letter.to).map_err(|e| ClientError::Invalid(e.to_string()))?;
        let inserted = self.conn.prepare_cached(STORE)?.execute(params![
            conv.to_string(),
            letter.message_id.to_string(),
            sender.user.as_str(),
            sender.device.to_string(),
            letter.subject,
            letter.body,
            to,
            letter.thread.to_string(),
            letter.in_reply_to.map(|m| m.to_string()),
            letter.marking.as_ref().map(Label::to_string),
            letter.sent_at_ms,
            now_ms,
            outgoing
        ])?;
        if inserted != 1 {
            return Ok(None);
        }
        let id = self.conn.last_insert_rowid();
        self.store_attachments(id, &letter.attachments)?;
        Ok(Some(id))
    }

    /// Keeps a stub of a received letter this device may not hold: its
    /// sender, time, thread and marking, and `why`; never its subject,
    /// body, recipients or attachments. Its subject and body say so, for
    /// every front end to show as they are. `None` if it is a duplicate.
    pub fn store_withheld(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        letter: Letter,
        why: &str,
        now_ms: i64,
    ) -> Result<Option<i64>> {
        let stub = Letter {
            subject: WITHHELD_SUBJECT.into(),
            body: format!(
                "This letter is withheld from this device: {why}. Its subject, text and \
                 attachments were not kept here, and a spillage alert was raised."
            ),
            to: Vec::new(),
            attachments: Vec::new(),
            policy: None,
            ..letter
        };
        let id = self.store_letter(conv, sender, &stub, false, now_ms)?;
        if let Some(id) = id {
            self.conn
                .prepare_cached(WITHHOLD)?
                .execute(params![why, id])?;
        }
        Ok(id)
    }

    /// Letters received with a local id above `after`, oldest first.
    pub fn inbox_after(&self, after: i64) -> Result<Vec<LetterSummary>> {
        let mut stmt = self.conn.prepare_cached(INBOX_AFTER)?;
        let rows = stmt.query_map([after], |r| {
            view(r).map(|v| LetterSummary {
                id: v.id,
                conversation: v.conversation,
                from: v.from,
                subject: v.subject,
                sent_at_ms: v.sent_at_ms,
                marking: v.marking,
                withheld: v.withheld,
            })
        })?;
        Ok(rows.collect::<Result<Vec<_>, _>>()?)
    }

    /// One letter, received or sent.
    pub fn letter(&self, id: i64) -> Result<LetterView> {
        let view = self
            .conn
            .prepare_cached(BY_ID)?
            .query_row([id], view)
            .optional()?
            .ok_or_else(|| ClientError::NotFound {
                kind: "letter",
                id: id.to_string(),
            })?;
        self.with_attachments(view)
    }

    fn with_attachments(&self, mut view: LetterView) -> Result<LetterView> {
        view.attachments = self.attachments(view.id)?;
        Ok(view)
    }

    /// The markings of a thread's letters (`None` for unmarked ones).
    pub fn thread_markings(
        &self,
        conv: &ConversationId,
        thread: &ThreadId,
    ) -> Result<Vec<Option<Label>>> {
        let mut stmt = self.conn.prepare_cached(
            "SELECT marking FROM letters WHERE conversation = ?1 AND thread = ?2",
        )?;
        let rows = stmt.query_map(params![conv.to_string(), thread.to_string()], |r| {
            r.get::<_, Option<String>>(0)
        })?;
        rows.map(|m| {
            m?.map(|s| Label::parse(&s))
                .transpose()
                .map_err(|e| ClientError::Home(format!("stored marking: {e}")))
        })
        .collect()
    }

    /// Forgets a letter (one of this device's that was never sent).
    pub fn delete_letter(&self, id: i64) -> Result<()> {
        self.conn
            .execute("DELETE FROM letters WHERE id = ?1", [id])?;
        Ok(())
    }

    /// Files this device's letter `message_id` under the conversation it
    /// was sealed into (a `send --to` letter may wait for one).
    pub fn file_letter(
        &self,
        me: &DeviceAddress,
        message_id: &MessageId,
        conv: &ConversationId,
    ) -> Result<()> {
        self.conn.prepare_cached(FILE_LETTER)?.execute(params![
            conv.to_string(),
            message_id.to_string(),
            me.user.as_str()
        ])?;
        Ok(())
    }

    /// This device's letters in `conv` that the server accepted in `epoch`
    /// or later, oldest first.
    pub fn sent_since_epoch(&self, conv: &ConversationId, epoch: u64) -> Result<Vec<LetterView>> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            columns!(),
            " FROM letters WHERE conversation = ?1 AND outgoing = 1 AND sent_epoch >= ?2 ORDER BY id"
        ))?;
        stmt.query_map(params![conv.to_string(), epoch as i64], view)?
            .map(|v| self.with_attachments(v?))
            .collect()
    }

    /// The server accepted this device's letter in `epoch` as number `seq`:
    /// remembered with the letter (see [`Home::sent_since_epoch`]) and in
    /// the counters (announced later as `Letter::prev`).
    pub fn note_accepted(
        &self,
        conv: &ConversationId,
        me: &DeviceAddress,
        message_id: &MessageId,
        epoch: u64,
        seq: u64,
    ) -> Result<()> {
        self.conn.prepare_cached(NOTE_SENT_EPOCH)?.execute(params![
            epoch as i64,
            conv.to_string(),
            me.user.as_str(),
            message_id.to_string()
        ])?;
        self.conn
            .prepare_cached(NOTE_ACCEPTED_COUNT)?
            .execute(params![
                seq as i64,
                conv.to_string(),
                epoch as i64,
                me.device.to_string()
            ])?;
        Ok(())
    }

    /// The highest letter number counted for `device` in that epoch (0: none).
    pub fn last_letter(&self, conv: &ConversationId, epoch: u64, device: &DeviceId) -> Result<u64> {
        let last: i64 = self
            .conn
            .prepare_cached(LAST_LETTER)?
            .query_row(
                params![conv.to_string(), epoch as i64, device.to_string()],
                |r| r.get(0),
            )
            .optional()?
            .unwrap_or(0);
        Ok(last as u64)
    }

    /// Letter numbers per conversation, epoch and sending device. To send
    /// (`seen` = None): the next number for this device. On receipt of
    /// number `seen`: the number that was expected next; the highest seen
    /// is kept, so a late letter filling a gap raises nothing again.
    pub fn count_letter(
        &self,
        conv: &ConversationId,
        epoch: u64,
        device: &DeviceId,
        seen: Option<u64>,
    ) -> Result<u64> {
        let last = self.last_letter(conv, epoch, device)?;
        let next = last + 1;
        let stored = seen.map_or(next, |n| n.max(last));
        self.conn.prepare_cached(COUNT_LETTER)?.execute(params![
            conv.to_string(),
            epoch as i64,
            device.to_string(),
            stored as i64
        ])?;
        Ok(next)
    }

    /// This device's last epoch before `epoch` in which the server accepted
    /// letters of it, and the highest number accepted there.
    pub fn last_accepted_before(
        &self,
        conv: &ConversationId,
        device: &DeviceId,
        epoch: u64,
    ) -> Result<Option<EpochCount>> {
        Ok(self
            .conn
            .prepare_cached(LAST_ACCEPTED_BEFORE)?
            .query_row(
                params![conv.to_string(), device.to_string(), epoch as i64],
                |r| {
                    Ok(EpochCount {
                        epoch: r.get::<_, i64>(0)? as u64,
                        last: r.get::<_, i64>(1)? as u64,
                    })
                },
            )
            .optional()?)
    }
}
