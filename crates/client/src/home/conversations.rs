//! Conversations as this device keeps them beside their MLS groups: name,
//! whether it is still a member, whether it is in step with the hub, and
//! when it last renewed its own keys there.

use super::{Home, parse_col};
use crate::error::Result;
use rusqlite::{OptionalExtension, Row, params};
use valise_proto::ConversationId;

/// One conversation row.
#[derive(Debug, Clone)]
pub struct Conversation {
    pub id: ConversationId,
    /// Content: never logged (Debug of views omits it).
    pub name: String,
    pub active: bool,
    /// Out of step with the hub until a sync rejoins (or refuses to).
    pub diverged: bool,
    /// The epoch at which this device joined.
    pub joined_epoch: u64,
    /// Made by `send --to` for exactly its members.
    pub direct: bool,
    /// The users of the MLS roster, sorted and comma-joined.
    pub members_key: String,
    /// The policy record this device holds (see `crate::ceiling`).
    pub policy: Option<Vec<u8>>,
    /// Why marked letters are refused here, if they are.
    pub degraded: Option<String>,
}

/// The columns [`row`] reads, as a literal for `concat!`.
macro_rules! columns {
    () => {
        "id, name, active, diverged, joined_epoch, direct, members_key, policy, degraded"
    };
}

pub(super) const BY_ID: &str = concat!("SELECT ", columns!(), " FROM conversations WHERE id = ?1");

fn row(r: &Row<'_>) -> rusqlite::Result<Conversation> {
    Ok(Conversation {
        id: parse_col(r, 0, ConversationId::parse)?,
        name: r.get(1)?,
        active: r.get(2)?,
        diverged: r.get(3)?,
        joined_epoch: r.get::<_, i64>(4)? as u64,
        direct: r.get(5)?,
        members_key: r.get(6)?,
        policy: r.get(7)?,
        degraded: r.get(8)?,
    })
}

/// Where a diverged conversation stands.
#[derive(Debug, Clone, Default)]
pub struct Divergence {
    /// The epoch that had two commits, if it was a fork.
    pub fork_epoch: Option<u64>,
    /// The last epoch this device shared with the hub.
    pub shared_epoch: Option<u64>,
    /// The hub's side as this device verified it (a public state blob).
    pub shadow: Option<Vec<u8>>,
    /// The devices the commits followed there added (`user/device`,
    /// comma-joined).
    pub shadow_added: String,
    /// Another copy of this device committed here.
    pub cloned: bool,
    /// Why the hub's side cannot be taken, whatever follows.
    pub hub_tainted: Option<String>,
}

impl Home {
    /// A conversation this device creates (or joins, `joined_epoch` > 0):
    /// active and in step. A conversation left before and joined again
    /// becomes active again.
    pub fn put_conversation(
        &self,
        id: &ConversationId,
        name: &str,
        direct: bool,
        joined_epoch: u64,
        now_ms: i64,
    ) -> Result<()> {
        self.conn
            .prepare_cached(
                "INSERT INTO conversations (id, name, direct, created_at_ms, joined_epoch, updated_leaf_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?4)
                 ON CONFLICT (id) DO UPDATE SET active = 1, diverged = 0, fork_epoch = NULL,
                     shared_epoch = NULL, shadow = NULL, shadow_added = '', cloned = 0,
                     hub_tainted = NULL, joined_epoch = excluded.joined_epoch,
                     updated_leaf_at_ms = excluded.updated_leaf_at_ms",
            )?
            .execute(params![id.to_string(), name, direct, now_ms, joined_epoch as i64])?;
        Ok(())
    }

    pub fn conversation(&self, id: &ConversationId) -> Result<Option<Conversation>> {
        Ok(self
            .conn
            .prepare_cached(BY_ID)?
            .query_row([id.to_string()], row)
            .optional()?)
    }

    /// Every conversation, oldest first.
    pub fn conversations(&self) -> Result<Vec<Conversation>> {
        let mut stmt = self.conn.prepare(concat!(
            "SELECT ",
            columns!(),
            " FROM conversations ORDER BY created_at_ms, id"
        ))?;
        Ok(stmt.query_map([], row)?.collect::<Result<_, _>>()?)
    }

    /// Conversations this device is still a member of.
    pub fn active_conversations(&self) -> Result<Vec<ConversationId>> {
        self.ids(
            "SELECT id FROM conversations WHERE active = 1 ORDER BY created_at_ms, id",
            [],
        )
    }

    /// Active conversations marked out of step.
    pub fn diverged_conversations(&self) -> Result<Vec<ConversationId>> {
        self.ids(
            "SELECT id FROM conversations WHERE diverged = 1 AND active = 1 ORDER BY created_at_ms",
            [],
        )
    }

    /// The direct conversations (made by `send --to`) whose roster holds
    /// exactly the users of `members_key`, oldest first.
    pub fn direct_conversations(&self, members_key: &str) -> Result<Vec<ConversationId>> {
        self.ids(
            "SELECT id FROM conversations WHERE direct = 1 AND active = 1 AND members_key = ?1
             ORDER BY created_at_ms, id",
            [members_key],
        )
    }

    fn ids<P: rusqlite::Params>(&self, sql: &str, p: P) -> Result<Vec<ConversationId>> {
        let mut stmt = self.conn.prepare_cached(sql)?;
        Ok(stmt
            .query_map(p, |r| parse_col(r, 0, ConversationId::parse))?
            .collect::<Result<_, _>>()?)
    }

    /// This device was removed: nothing more is sent or rejoined there.
    pub fn set_inactive(&self, id: &ConversationId) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET active = 0 WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }

    /// Settings another member sent (inside the encryption).
    pub fn set_meta(&self, id: &ConversationId, name: &str, direct: bool) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET name = ?1, direct = direct OR ?2 WHERE id = ?3",
            params![name, direct, id.to_string()],
        )?;
        Ok(())
    }

    /// Keeps the conversation's policy record (see `crate::ceiling`).
    pub fn set_policy(&self, id: &ConversationId, record: &[u8]) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET policy = ?1 WHERE id = ?2",
            params![record, id.to_string()],
        )?;
        Ok(())
    }

    /// Marks the conversation degraded for `why`, or whole again (`None`).
    pub fn set_degraded(&self, id: &ConversationId, why: Option<&str>) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET degraded = ?1 WHERE id = ?2",
            params![why, id.to_string()],
        )?;
        Ok(())
    }

    /// Keeps the roster's users beside the group (after every change to it).
    pub fn set_members_key(&self, id: &ConversationId, key: &str) -> Result<()> {
        self.conn
            .prepare_cached("UPDATE conversations SET members_key = ?1 WHERE id = ?2")?
            .execute(params![key, id.to_string()])?;
        Ok(())
    }

    /// Marks a conversation out of step with the hub, remembering the last
    /// epoch shared with it and, for a fork, the forked epoch (the earliest
    /// one stays).
    pub fn mark_diverged(
        &self,
        id: &ConversationId,
        fork: Option<u64>,
        shared_epoch: u64,
    ) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET diverged = 1,
                 fork_epoch = min(coalesce(fork_epoch, ?1), coalesce(?1, fork_epoch)),
                 shared_epoch = min(coalesce(shared_epoch, ?2), ?2)
             WHERE id = ?3",
            params![fork.map(|e| e as i64), shared_epoch as i64, id.to_string()],
        )?;
        Ok(())
    }

    /// Another copy of this device committed in `id`.
    pub fn set_cloned(&self, id: &ConversationId) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET cloned = 1 WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }

    /// The hub's side of `id` can no longer be taken, and why.
    pub fn taint_hub_side(&self, id: &ConversationId, why: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET hub_tainted = ?1 WHERE id = ?2",
            params![why, id.to_string()],
        )?;
        Ok(())
    }

    /// In step again: nothing left to check, follow or send again.
    pub fn clear_diverged(&self, id: &ConversationId) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET diverged = 0, fork_epoch = NULL, shared_epoch = NULL,
                 shadow = NULL, shadow_added = '', cloned = 0, hub_tainted = NULL
             WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }

    pub fn divergence(&self, id: &ConversationId) -> Result<Divergence> {
        Ok(self
            .conn
            .query_row(
                "SELECT fork_epoch, shared_epoch, shadow, shadow_added, cloned, hub_tainted
                 FROM conversations WHERE id = ?1",
                [id.to_string()],
                |r| {
                    Ok(Divergence {
                        fork_epoch: r.get::<_, Option<i64>>(0)?.map(|e| e as u64),
                        shared_epoch: r.get::<_, Option<i64>>(1)?.map(|e| e as u64),
                        shadow: r.get(2)?,
                        shadow_added: r.get(3)?,
                        cloned: r.get(4)?,
                        hub_tainted: r.get(5)?,
                    })
                },
            )
            .optional()?
            .unwrap_or_default())
    }

    /// The hub's side of a diverged conversation, as verified so far, and
    /// the devices added there.
    pub fn set_shadow(&self, id: &ConversationId, state: &[u8], added: &str) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET shadow = ?1, shadow_added = ?2 WHERE id = ?3",
            params![state, added, id.to_string()],
        )?;
        Ok(())
    }

    /// This device renewed its own leaf now (a commit of its own, a join or
    /// a rejoin): no update is due before the interval is over.
    pub fn leaf_renewed(&self, id: &ConversationId, now_ms: i64) -> Result<()> {
        self.conn
            .prepare_cached(
                "UPDATE conversations SET updated_leaf_at_ms = ?1, update_due = 0 WHERE id = ?2",
            )?
            .execute(params![now_ms, id.to_string()])?;
        Ok(())
    }

    /// Something happened (a fork, a rollback, a revocation, another
    /// member's rejoin) after which this device renews its leaf at once.
    pub fn set_update_due(&self, id: &ConversationId) -> Result<()> {
        self.conn.execute(
            "UPDATE conversations SET update_due = 1 WHERE id = ?1",
            [id.to_string()],
        )?;
        Ok(())
    }

    /// Active, in-step conversations where this device must renew its leaf:
    /// marked, or not renewed since `older_than_ms`.
    pub fn updates_due(&self, older_than_ms: i64) -> Result<Vec<ConversationId>> {
        self.ids(
            "SELECT id FROM conversations WHERE active = 1 AND diverged = 0
                 AND (update_due = 1 OR updated_leaf_at_ms < ?1)
             ORDER BY created_at_ms, id",
            [older_than_ms],
        )
    }

    /// Keeps the public state of an epoch this device is leaving (a fork
    /// of it can then be followed), and forgets snapshots older than `keep`
    /// epochs.
    pub fn put_snapshot(
        &self,
        id: &ConversationId,
        epoch: u64,
        state: &[u8],
        keep: u64,
    ) -> Result<()> {
        let conv = id.to_string();
        self.conn
            .prepare_cached(
                "INSERT OR REPLACE INTO epoch_snapshots (conversation, epoch, state) VALUES (?1, ?2, ?3)",
            )?
            .execute(params![conv, epoch as i64, state])?;
        self.conn
            .prepare_cached("DELETE FROM epoch_snapshots WHERE conversation = ?1 AND epoch < ?2")?
            .execute(params![conv, epoch.saturating_sub(keep) as i64])?;
        Ok(())
    }

    /// The public state this device had at `epoch`, if still kept.
    pub fn snapshot(&self, id: &ConversationId, epoch: u64) -> Result<Option<Vec<u8>>> {
        Ok(self
            .conn
            .prepare_cached(
                "SELECT state FROM epoch_snapshots WHERE conversation = ?1 AND epoch = ?2",
            )?
            .query_row(params![id.to_string(), epoch as i64], |r| r.get(0))
            .optional()?)
    }
}
