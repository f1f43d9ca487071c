//! Letters delivered before the commit that starts their epoch, kept until
//! it comes (see `engine/held.rs` for when they are opened or dropped).

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{Row, params};
use valise_proto::wire::{Entry as InboxEntry, EntryKind};
use valise_proto::{ConversationId, DeviceAddress};

/// One held letter: the inbox entry as delivered, and the epoch it is for.
#[derive(Debug, Clone)]
pub struct Held {
    pub epoch: u64,
    pub entry: InboxEntry,
}

pub(super) const HOLD: &str = "INSERT INTO held_letters (conversation, epoch, inbox_seq, sender,
        message)
    VALUES (?1, ?2, ?3, ?4, ?5)";
/// How many, and how many bytes of messages.
pub(super) const SIZE: &str = "SELECT count(*), coalesce(sum(length(message)), 0)
    FROM held_letters WHERE conversation = ?1";
pub(super) const OLDEST: &str = "DELETE FROM held_letters WHERE id =
    (SELECT id FROM held_letters WHERE conversation = ?1 ORDER BY id LIMIT 1)
    RETURNING epoch, inbox_seq, conversation, sender, message";
/// In order of arrival.
pub(super) const REACHED: &str = "SELECT epoch, inbox_seq, conversation, sender, message
    FROM held_letters WHERE conversation = ?1 AND epoch <= ?2 ORDER BY id";
pub(super) const UNHOLD_REACHED: &str =
    "DELETE FROM held_letters WHERE conversation = ?1 AND epoch <= ?2";
/// Once per read of the whole inbox, over the few letters held.
const UNALERTED: &str = "SELECT conversation, count(*), min(epoch) FROM held_letters
    WHERE alerted = 0 GROUP BY conversation ORDER BY conversation";
const MARK_ALERTED: &str = "UPDATE held_letters SET alerted = 1 WHERE alerted = 0";

fn held(r: &Row<'_>) -> rusqlite::Result<Held> {
    Ok(Held {
        epoch: r.get::<_, i64>(0)? as u64,
        entry: InboxEntry {
            seq: r.get::<_, i64>(1)? as u64,
            kind: EntryKind::Application,
            conversation: parse_col(r, 2, ConversationId::parse)?,
            sender: parse_col(r, 3, DeviceAddress::parse)?,
            message: r.get::<_, Vec<u8>>(4)?,
            ratchet_tree: None,
        },
    })
}

/// Epochs as SQLite stores them (a hostile epoch past `i64::MAX` is as
/// far away as `i64::MAX`).
fn sql_epoch(epoch: u64) -> i64 {
    i64::try_from(epoch).unwrap_or(i64::MAX)
}

impl Home {
    /// Keeps an application entry until its conversation reaches `epoch`.
    pub fn hold(&self, entry: &InboxEntry, epoch: u64) -> Result<()> {
        self.conn.prepare_cached(HOLD)?.execute(params![
            entry.conversation.to_string(),
            sql_epoch(epoch),
            sql_epoch(entry.seq),
            entry.sender.to_string(),
            entry.message.as_slice(),
        ])?;
        Ok(())
    }

    /// How many letters `conv` holds, and their messages' bytes.
    pub fn held_size(&self, conv: &ConversationId) -> Result<(u64, u64)> {
        let (n, bytes): (i64, i64) = self
            .conn
            .prepare_cached(SIZE)?
            .query_row([conv.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))?;
        Ok((n as u64, bytes as u64))
    }

    /// Takes out the letter `conv` has held longest, if any.
    pub fn drop_oldest_held(&self, conv: &ConversationId) -> Result<Option<Held>> {
        let mut stmt = self.conn.prepare_cached(OLDEST)?;
        let mut rows = stmt.query_map([conv.to_string()], held)?;
        Ok(rows.next().transpose()?)
    }

    /// Per conversation, the letters held and not yet alerted: how many,
    /// and the earliest epoch they wait for; from then on they count as
    /// alerted.
    pub fn alert_held(&self) -> Result<Vec<(ConversationId, u64, u64)>> {
        let waiting = self
            .conn
            .prepare_cached(UNALERTED)?
            .query_map([], |r| {
                Ok((
                    parse_col(r, 0, ConversationId::parse)?,
                    r.get::<_, i64>(1)? as u64,
                    r.get::<_, i64>(2)? as u64,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        if !waiting.is_empty() {
            self.conn.prepare_cached(MARK_ALERTED)?.execute([])?;
        }
        Ok(waiting)
    }

    /// Takes out the letters `conv` holds for `epoch` or earlier, in order
    /// of arrival.
    pub fn take_reached(&self, conv: &ConversationId, epoch: u64) -> Result<Vec<Held>> {
        let args = params![conv.to_string(), sql_epoch(epoch)];
        let reached = self
            .conn
            .prepare_cached(REACHED)?
            .query_map(args, held)?
            .collect::<Result<Vec<_>, _>>()?;
        if !reached.is_empty() {
            self.conn.prepare_cached(UNHOLD_REACHED)?.execute(args)?;
        }
        Ok(reached)
    }
}
