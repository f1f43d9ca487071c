//! What this device knows of each conversation's commits: the one with
//! which it left each epoch (a different one for the same epoch is a fork,
//! the same one again a replay), and its own commits the hub has not
//! confirmed yet.

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{OptionalExtension, params};
use valise_proto::ConversationId;

impl Home {
    /// Remembers the hash of the commit with which this device left `epoch`.
    pub fn log_commit(&self, conv: &ConversationId, epoch: u64, hash: &[u8; 32]) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO epoch_commits (conversation, epoch, commit_hash)
                 VALUES (?1, ?2, ?3)",
            )?
            .execute(params![conv.to_string(), epoch as i64, hash.as_slice()])?;
        Ok(())
    }

    /// The hash of the commit with which this device left `epoch`, if any
    /// (`None` also for a hash of the wrong length: it cannot match).
    pub fn followed_commit(&self, conv: &ConversationId, epoch: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT commit_hash FROM epoch_commits WHERE conversation = ?1 AND epoch = ?2",
            )?
            .query_row(params![conv.to_string(), epoch as i64], |r| r.get(0))
            .optional()?)
    }

    /// Remembers (or forgets) that this device built a commit in `conv`
    /// the hub has not confirmed.
    pub fn mark_pending_commit(&self, conv: &ConversationId, pending: bool) -> Result<()> {
        let sql = if pending {
            "INSERT OR IGNORE INTO pending_commits (conversation) VALUES (?1)"
        } else {
            "DELETE FROM pending_commits WHERE conversation = ?1"
        };
        self.conn.prepare_cached(sql)?.execute([conv.to_string()])?;
        Ok(())
    }

    /// Conversations holding an unconfirmed commit of this device.
    pub fn pending_commits(&self) -> Result<Vec<ConversationId>> {
        let mut stmt = self
            .conn
            .prepare_cached("SELECT conversation FROM pending_commits")?;
        Ok(stmt
            .query_map([], |r| parse_col(r, 0, ConversationId::parse))?
            .collect::<Result<_, _>>()?)
    }
}
