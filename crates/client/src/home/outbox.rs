//! The outbox: what this device wrote and the server has not accepted yet.
//!
//! A sealed entry keeps its ciphertext, because the MLS ratchet has moved
//! on for it: it is sent, never made again, unless the epoch changed. An
//! entry may also wait unsealed (`held`): written in a conversation that is
//! out of step with the hub, or to a person whose identity changed. It is
//! sealed once that is over; nothing written is lost meanwhile.

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{OptionalExtension, Row, params};
use valise_proto::{ConversationId, MessageId};

/// One outbox entry.
#[derive(Clone)]
pub struct Outbound {
    pub message_id: MessageId,
    /// `None`: a `send --to` letter whose conversation is not chosen yet.
    pub conversation: Option<ConversationId>,
    /// For a `send --to` letter: the only users it may reach (sorted,
    /// comma-joined, the sender included).
    pub exact_to: Option<String>,
    /// As written: a letter is numbered anew each time it is sealed.
    pub plaintext: Vec<u8>,
    /// The epoch and ciphertext it was sealed in, and its number there
    /// (0: not a letter); `None` while it waits.
    pub sealed: Option<Sealed>,
    /// Why it waits, for the person.
    pub held: Option<String>,
}

/// An entry sealed for one epoch.
#[derive(Clone)]
pub struct Sealed {
    pub epoch: u64,
    pub ciphertext: Vec<u8>,
    pub seq: u64,
}

// Plaintext and ciphertext never reach a log.
impl std::fmt::Debug for Outbound {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outbound")
            .field("message_id", &self.message_id)
            .field("conversation", &self.conversation)
            .field("sealed", &self.sealed.as_ref().map(|s| s.epoch))
            .finish_non_exhaustive()
    }
}

/// The columns [`row`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "message_id, conversation, exact_to, plaintext, epoch, ciphertext, seq, held"
    };
}

pub(super) const PUT: &str = "INSERT INTO outbox (message_id, conversation, exact_to, plaintext,
        epoch, ciphertext, seq, held, created_at_ms)
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)
    ON CONFLICT (message_id) DO UPDATE SET conversation = excluded.conversation,
        epoch = excluded.epoch, ciphertext = excluded.ciphertext, seq = excluded.seq,
        held = excluded.held";
pub(super) const BY_MESSAGE_ID: &str =
    concat!("SELECT ", columns!(), " FROM outbox WHERE message_id = ?1");
/// Reads every row by purpose: the outbox holds only what is not sent yet.
pub(super) const ALL: &str = concat!("SELECT ", columns!(), " FROM outbox ORDER BY id");
pub(super) const DROP: &str = "DELETE FROM outbox WHERE message_id = ?1";

fn row(r: &Row<'_>) -> rusqlite::Result<Outbound> {
    let conversation = r
        .get::<_, Option<String>>(1)?
        .map(|c| ConversationId::parse(&c))
        .transpose()
        .map_err(|e| {
            rusqlite::Error::FromSqlConversionFailure(1, rusqlite::types::Type::Text, Box::new(e))
        })?;
    let sealed = match (r.get::<_, Option<i64>>(4)?, r.get::<_, Option<Vec<u8>>>(5)?) {
        (Some(epoch), Some(ciphertext)) => Some(Sealed {
            epoch: epoch as u64,
            ciphertext,
            seq: r.get::<_, i64>(6)? as u64,
        }),
        _ => None,
    };
    Ok(Outbound {
        message_id: parse_col(r, 0, MessageId::parse)?,
        conversation,
        exact_to: r.get(2)?,
        plaintext: r.get(3)?,
        sealed,
        held: r.get(7)?,
    })
}

impl Home {
    /// Adds or updates an entry (sealed, or waiting with a reason), keeping
    /// its place in the queue.
    pub fn put_outbound(&self, o: &Outbound, now_ms: i64) -> Result<()> {
        let (epoch, ciphertext, seq) = match &o.sealed {
            Some(s) => (
                Some(s.epoch as i64),
                Some(s.ciphertext.as_slice()),
                s.seq as i64,
            ),
            None => (None, None, 0),
        };
        self.conn.prepare_cached(PUT)?.execute(params![
            o.message_id.to_string(),
            o.conversation.map(|c| c.to_string()),
            o.exact_to,
            o.plaintext,
            epoch,
            ciphertext,
            seq,
            o.held,
            now_ms
        ])?;
        Ok(())
    }

    pub fn outbound(&self, message_id: &MessageId) -> Result<Option<Outbound>> {
        Ok(self
            .conn
            .prepare_cached(BY_MESSAGE_ID)?
            .query_row([message_id.to_string()], row)
            .optional()?)
    }

    /// Whether this device's letter `message_id` has yet to leave: a draft
    /// waiting for its files' upload, or in the outbox.
    pub fn waiting_to_go(&self, message_id: &MessageId) -> Result<bool> {
        Ok(self.outbound(message_id)?.is_some() || self.is_draft(message_id)?)
    }

    /// Every entry, in the order written.
    pub fn outbox(&self) -> Result<Vec<Outbound>> {
        let mut stmt = self.conn.prepare_cached(ALL)?;
        Ok(stmt.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    /// Forgets delivered entries. This write alone skips the fsync: if a
    /// power cut undoes it, the entries are sent again and the server,
    /// which knows their ids, ignores the duplicates. Inside a caller's
    /// transaction it is part of that write (SQLite cannot change the
    /// setting there), and as durable.
    pub fn drop_outbound(&self, ids: &[MessageId]) -> Result<()> {
        if ids.is_empty() {
            return Ok(());
        }
        let delete = || {
            self.transaction(|| {
                let mut stmt = self.conn.prepare_cached(DROP)?;
                for id in ids {
                    stmt.execute([id.to_string()])?;
                }
                Ok(())
            })
        };
        if !self.conn.is_autocommit() {
            return delete();
        }
        self.conn.execute_batch("PRAGMA synchronous = NORMAL")?;
        let deleted = delete();
        self.conn.execute_batch("PRAGMA synchronous = FULL")?;
        deleted
    }
}
