//! The embedded SQLite backend: one file, WAL, one writer connection behind a
//! mutex (SQLite serialises writers anyway) and a few reader connections so
//! that inbox reads do not wait for writes.

use super::*;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Transaction, params};
use std::path::Path;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The oldest schema whose users can be carried over: before it
/// (0004_identity), directory entries had no identity and no approvals,
/// and clients refuse that format anywhere in a user's history (accepting
/// it would let a server publish devices nobody approved: a downgrade).
/// Valise had no deployment then, so such a database is refused rather
/// than converted; one without users is upgraded.
const FIRST_CARRIED: usize = 4;

/// Numbered migrations, applied in order by `PRAGMA user_version`.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_directory_pending.sql"),
    include_str!("migrations/0003_group_info.sql"),
    include_str!("migrations/0004_identity.sql"),
];

mod devices;
mod key_packages;
#[cfg(feature = "adversary")]
mod tamper;

const READERS: usize = 4;

const KIND_COMMIT: i64 = 1;
const KIND_WELCOME: i64 = 2;
const KIND_APPLICATION: i64 = 3;

/// SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: Mutex<Connection>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;",
    )?;
    conn.set_prepared_statement_cache_capacity(64);
    Ok(())
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while holding the lock leaves the connection usable: SQLite
    // rolls back an unfinished transaction when it is dropped.
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} out of range")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("{v} out of range")))
}

fn parse_user(s: &str) -> Result<UserId, StoreError> {
    UserId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_device(s: &str) -> Result<DeviceId, StoreError> {
    DeviceId::parse(s).map_err(|e| StoreError::Corrupt(e.to_string()))
}

fn parse_addr(user: &str, device: &str) -> Result<DeviceAddress, StoreError> {
    Ok(DeviceAddress::new(parse_user(user)?, parse_device(device)?))
}

fn roster_of(tx: &Connection, id: &ConversationId) -> Result<Vec<DeviceAddress>, StoreError> {
    let mut stmt = tx.prepare_cached(
        "SELECT user, device FROM members WHERE conversation = ?1 ORDER BY user, device",
    )?;
    let rows = stmt.query_map(params![id.as_bytes()], |r| {
        Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?))
    })?;
    let mut out = Vec::new();
    for row in rows {
        let (u, d) = row?;
        out.push(parse_addr(&u, &d)?);
    }
    Ok(out)
}

fn current_epoch(tx: &Connection, id: &ConversationId) -> Result<Option<u64>, StoreError> {
    let epoch: Option<i64> = tx
        .prepare_cached("SELECT epoch FROM conversations WHERE id = ?1")?
        .query_row(params![id.as_bytes()], |r| r.get(0))
        .optional()?;
    epoch.map(to_u64).transpose()
}

fn insert_roster(
    tx: &Transaction<'_>,
    id: &ConversationId,
    roster: &[DeviceAddress],
) -> Result<(), StoreError> {
    let mut stmt =
        tx.prepare_cached("INSERT INTO members (conversation, user, device) VALUES (?1, ?2, ?3)")?;
    for m in roster {
        stmt.execute(params![
            id.as_bytes(),
            m.user.as_str(),
            m.device.to_string()
        ])?;
    }
    Ok(())
}

// One column per argument reads clearer here than a struct built once.
#[allow(clippy::too_many_arguments)]
fn insert_payload(
    tx: &Connection,
    conversation: &ConversationId,
    sender: &DeviceAddress,
    kind: i64,
    bytes: &[u8],
    ratchet_tree: Option<&[u8]>,
    client_msg_id: Option<&MessageId>,
    now_ms: i64,
) -> Result<i64, StoreError> {
    tx.prepare_cached(
        "INSERT INTO payloads (conversation, sender_user, sender_device, kind, bytes, \
         ratchet_tree, client_msg_id, created_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
    )?
    .execute(params![
        conversation.as_bytes(),
        sender.user.as_str(),
        sender.device.to_string(),
        kind,
        bytes,
        ratchet_tree,
        client_msg_id.map(|m| m.as_bytes().to_vec()),
        now_ms
    ])?;
    Ok(tx.last_insert_rowid())
}

fn queue(tx: &Connection, payload: i64, devices: &[DeviceAddress]) -> Result<(), StoreError> {
    let mut stmt =
        tx.prepare_cached("INSERT INTO inbox (user, device, payload_id) VALUES (?1, ?2, ?3)")?;
    for d in devices {
        stmt.execute(params![d.user.as_str(), d.device.to_string(), payload])?;
    }
    Ok(())
}

/// Queues `user` for the directory's next epoch; returns the queue position.
fn mark_pending(tx: &Transaction<'_>, user: &UserId, now_ms: i64) -> Result<u64, StoreError> {
    tx.prepare_cached("INSERT INTO directory_pending (user, created_at_ms) VALUES (?1, ?2)")?
        .execute(params![user.as_str(), now_ms])?;
    to_u64(tx.last_insert_rowid())
}

fn is_unique_violation(e: &rusqlite::Error) -> bool {
    matches!(
        e,
        rusqlite::Error::SqliteFailure(f, _)
            if f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_PRIMARYKEY
                || f.extended_code == rusqlite::ffi::SQLITE_CONSTRAINT_UNIQUE
    )
}

impl SqliteStore {
    /// Opens (creating if needed) the database and applies pending migrations.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut writer = Connection::open(path)?;
        configure(&writer)?;
        Self::migrate(&mut writer)?;
        let mut readers = Vec::with_capacity(READERS);
        for _ in 0..READERS {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )?;
            r.busy_timeout(std::time::Duration::from_millis(5000))?;
            r.set_prepared_statement_cache_capacity(32);
            readers.push(Mutex::new(r));
        }
        Ok(Self {
            writer: Mutex::new(writer),
            readers,
            next_reader: AtomicUsize::new(0),
        })
    }

    fn migrate(conn: &mut Connection) -> Result<(), StoreError> {
        let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
        let version = usize::try_from(version).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(StoreError::Corrupt(format!(
                "database schema version {version} is newer than this server ({})",
                MIGRATIONS.len()
            )));
        }
        if (1..FIRST_CARRIED).contains(&version)
            && conn.query_row("SELECT EXISTS (SELECT 1 FROM users)", [], |r| r.get(0))?
        {
            return Err(StoreError::Incompatible(
                "this data directory has users enrolled before devices were approved by their \
                 user: their key directory entries are in a format clients no longer accept, \
                 so it cannot be carried over; initialise a new data directory and invite \
                 everyone again"
                    .into(),
            ));
        }
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.execute_batch(&format!("PRAGMA user_version = {}", i + 1))?;
            tx.commit()?;
        }
        Ok(())
    }

    fn reader(&self) -> std::sync::MutexGuard<'_, Connection> {
        let i = self.next_reader.fetch_add(1, Ordering::Relaxed) % self.readers.len().max(1);
        match self.readers.get(i) {
            Some(r) => lock(r),
            None => lock(&self.writer),
        }
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let out = f(&tx)?;
        tx.commit()?;
        Ok(out)
    }

    /// A write that may be lost in a power cut without harm (the next
    /// synced commit makes it durable anyway), so it skips the fsync.
    fn write_unsynced<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut conn = lock(&self.writer);
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        let out = (|| {
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx)?;
            tx.commit()?;
            Ok(out)
        })();
        conn.pragma_update(None, "synchronous", "FULL")?;
        out
    }
}

impl Store for SqliteStore {
    #[cfg(feature = "adversary")]
    fn tamper(&self, op: &Tamper) -> Result<Vec<i64>, StoreError> {
        self.write(|tx| tamper::apply(tx, op))
    }

    #[cfg(feature = "adversary")]
    fn snapshot(&self) -> Result<std::path::PathBuf, StoreError> {
        tamper::snapshot(&self.reader())
    }

    fn create_invite(
        &self,
        code_hash: [u8; 32],
        user: &UserId,
        now_ms: i64,
        expires_at_ms: i64,
        reset: bool,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO invites (code_hash, user, created_at_ms, expires_at_ms, reset) \
                 VALUES (?1, ?2, ?3, ?4, ?5)",
                params![&code_hash[..], user.as_str(), now_ms, expires_at_ms, reset],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists
                } else {
                    e.into()
                }
            })?;
            Ok(())
        })
    }

    fn check_invite(
        &self,
        code_hash: &[u8; 32],
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        devices::check_invite(&self.reader(), code_hash, user, now_ms)
    }

    fn enroll(&self, e: &Enrollment) -> Result<Enrolled, StoreError> {
        self.write(|tx| devices::enroll(tx, e))
    }

    fn approve_device(&self, a: &NewApproval) -> Result<u64, StoreError> {
        self.write(|tx| devices::approve(tx, a))
    }

    fn revoke_device(&self, r: &NewRevocation) -> Result<u64, StoreError> {
        self.write(|tx| devices::revoke(tx, r))
    }

    fn revoked_count(&self) -> Result<u64, StoreError> {
        devices::revoked_count(&self.reader())
    }

    fn revoked_devices(&self) -> Result<Vec<DeviceAddress>, StoreError> {
        devices::revoked_devices(&self.reader())
    }

    fn mark_directory_pending(&self, user: &UserId, now_ms: i64) -> Result<u64, StoreError> {
        self.write(|tx| mark_pending(tx, user, now_ms))
    }

    fn directory_pending(&self) -> Result<(Vec<UserId>, u64), StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT user, MAX(seq) FROM directory_pending GROUP BY user ORDER BY user",
        )?;
        let rows = stmt.query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, i64>(1)?)))?;
        let mut users = Vec::new();
        let mut up_to = 0;
        for row in rows {
            let (u, seq) = row?;
            users.push(parse_user(&u)?);
            up_to = up_to.max(to_u64(seq)?);
        }
        Ok((users, up_to))
    }

    fn clear_directory_pending(&self, up_to: u64) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "DELETE FROM directory_pending WHERE seq <= ?1",
                params![to_i64(up_to)?],
            )?;
            Ok(())
        })
    }

    fn device(&self, device: &DeviceAddress) -> Result<Option<DeviceRecord>, StoreError> {
        devices::device(&self.reader(), device)
    }

    fn create_token(
        &self,
        token_hash: [u8; 32],
        device: &DeviceAddress,
        expires_at_ms: i64,
    ) -> Result<(), StoreError> {
        self.write(|tx| {
            tx.execute(
                "INSERT INTO tokens (token_hash, user, device, expires_at_ms) VALUES (?1, ?2, ?3, ?4)",
                params![
                    &token_hash[..],
                    device.user.as_str(),
                    device.device.to_string(),
                    expires_at_ms
                ],
            )?;
            Ok(())
        })
    }

    fn token_device(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<(DeviceAddress, i64)>, StoreError> {
        let conn = self.reader();
        let row: Option<(String, String, i64)> = conn
            .prepare_cached(
                "SELECT user, device, expires_at_ms FROM tokens
                 WHERE token_hash = ?1 AND expires_at_ms > ?2",
            )?
            .query_row(params![&token_hash[..], now_ms], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })
            .optional()?;
        row.map(|(u, d, exp)| Ok((parse_addr(&u, &d)?, exp)))
            .transpose()
    }

    fn add_key_packages(
        &self,
        device: &DeviceAddress,
        one_time: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        replace: bool,
    ) -> Result<u64, StoreError> {
        self.write(|tx| key_packages::add(tx, device, one_time, last_resort, replace))
    }

    fn claim_key_packages(
        &self,
        user: &UserId,
        exclude: &[DeviceId],
        caller: &DeviceAddress,
        valid_at: u64,
    ) -> Result<Vec<ClaimedPackage>, StoreError> {
        self.write(|tx| key_packages::claim(tx, user, exclude, caller, valid_at))
    }

    fn user(&self, user: &UserId) -> Result<UserRecord, StoreError> {
        devices::user(&self.reader(), user)
    }

    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let users: Vec<String> = {
            let conn = self.reader();
            let mut stmt = conn.prepare_cached("SELECT user FROM users ORDER BY user")?;
            let rows = stmt.query_map([], |r| r.get::<_, String>(0))?;
            rows.collect::<Result<_, _>>()?
        };
        users.iter().map(|u| self.user(&parse_user(u)?)).collect()
    }

    fn create_conversation(&self, c: &NewConversation) -> Result<(), StoreError> {
        self.write(|tx| {
            let r = &c.record;
            tx.execute(
                "INSERT INTO conversations (id, epoch, ciphersuite, state, created_by_user, \
                 created_by_device, created_at_ms, group_info) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![
                    r.id.as_bytes(),
                    to_i64(r.epoch)?,
                    r.ciphersuite,
                    r.state,
                    c.created_by.user.as_str(),
                    c.created_by.device.to_string(),
                    c.now_ms,
                    r.group_info
                ],
            )
            .map_err(|e| {
                if is_unique_violation(&e) {
                    StoreError::AlreadyExists
                } else {
                    e.into()
                }
            })?;
            insert_roster(tx, &r.id, &r.roster)?;
            Ok(())
        })
    }

    fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError> {
        let conn = self.reader();
        let row: Option<(i64, u16, Vec<u8>, Vec<u8>)> = conn
            .prepare_cached(
                "SELECT epoch, ciphersuite, state, group_info FROM conversations WHERE id = ?1",
            )?
            .query_row(params![id.as_bytes()], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
            })
            .optional()?;
        let Some((epoch, ciphersuite, state, group_info)) = row else {
            return Ok(None);
        };
        Ok(Some(ConversationRecord {
            id: *id,
            epoch: to_u64(epoch)?,
            ciphersuite,
            state,
            roster: roster_of(&conn, id)?,
            group_info,
        }))
    }

    fn apply_commit(&self, c: &AppliedCommit) -> Result<Vec<DeviceAddress>, StoreError> {
        self.write(|tx| {
            let current = current_epoch(tx, &c.conversation)?.ok_or(StoreError::NotFound)?;
            if current != c.expected_epoch {
                return Err(StoreError::StaleEpoch { current });
            }
            let old_roster = roster_of(tx, &c.conversation)?;
            if !old_roster.contains(&c.sender) {
                return Err(StoreError::NotMember);
            }
            tx.prepare_cached(
                "UPDATE conversations SET epoch = ?1, state = ?2, group_info = ?3 WHERE id = ?4",
            )?
            .execute(params![
                to_i64(c.new_epoch)?,
                c.new_state,
                c.new_group_info,
                c.conversation.as_bytes()
            ])?;
            tx.prepare_cached("DELETE FROM members WHERE conversation = ?1")?
                .execute(params![c.conversation.as_bytes()])?;
            insert_roster(tx, &c.conversation, &c.new_roster)?;

            // The committer gets its own commit too: a device that crashed
            // between the hub's acceptance and its merge learns it happened.
            let mut touched: Vec<DeviceAddress> = old_roster;
            let commit_id = insert_payload(
                tx,
                &c.conversation,
                &c.sender,
                KIND_COMMIT,
                &c.commit,
                None,
                None,
                c.now_ms,
            )?;
            queue(tx, commit_id, &touched)?;
            if let Some(w) = &c.welcome {
                let welcome_id = insert_payload(
                    tx,
                    &c.conversation,
                    &c.sender,
                    KIND_WELCOME,
                    &w.message,
                    Some(&w.ratchet_tree),
                    None,
                    c.now_ms,
                )?;
                queue(tx, welcome_id, &w.joiners)?;
                touched.extend(w.joiners.iter().cloned());
            }
            Ok(touched)
        })
    }

    fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<MessageOutcome, StoreError>>, StoreError> {
        self.write(|tx| {
            let mut out = Vec::with_capacity(batch.len());
            for m in batch {
                out.push(append_one(tx, m)?);
            }
            Ok(out)
        })
    }

    fn inbox_page(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<StoredEntry>, bool), StoreError> {
        let conn = self.reader();
        let mut stmt = conn.prepare_cached(
            "SELECT i.seq, p.kind, p.conversation, p.sender_user, p.sender_device, p.bytes, \
             p.ratchet_tree FROM inbox i JOIN payloads p ON p.id = i.payload_id \
             WHERE i.user = ?1 AND i.device = ?2 AND i.seq > ?3 ORDER BY i.seq ASC LIMIT ?4",
        )?;
        let fetch = i64::try_from(limit.saturating_add(1)).unwrap_or(i64::MAX);
        let rows = stmt.query_map(
            params![
                device.user.as_str(),
                device.device.to_string(),
                i64::try_from(after).unwrap_or(i64::MAX),
                fetch
            ],
            |r| {
                Ok((
                    r.get::<_, i64>(0)?,
                    r.get::<_, i64>(1)?,
                    r.get::<_, Vec<u8>>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, String>(4)?,
                    r.get::<_, Vec<u8>>(5)?,
                    r.get::<_, Option<Vec<u8>>>(6)?,
                ))
            },
        )?;
        let mut entries = Vec::new();
        let mut more = false;
        for row in rows {
            let (seq, kind, conv, su, sd, message, ratchet_tree) = row?;
            if entries.len() == limit {
                more = true;
                break;
            }
            let kind = match kind {
                KIND_COMMIT => EntryKind::Commit,
                KIND_WELCOME => EntryKind::Welcome,
                KIND_APPLICATION => EntryKind::Application,
                other => return Err(StoreError::Corrupt(format!("payload kind {other}"))),
            };
            entries.push(StoredEntry {
                seq: to_u64(seq)?,
                kind,
                conversation: ConversationId::from_slice(&conv)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?,
                sender: parse_addr(&su, &sd)?,
                message,
                ratchet_tree,
            });
        }
        Ok((entries, more))
    }

    fn inbox_count(&self, device: &DeviceAddress, after: u64) -> Result<u64, StoreError> {
        let conn = self.reader();
        let n: i64 = conn
            .prepare_cached(
                "SELECT count(*) FROM inbox WHERE user = ?1 AND device = ?2 AND seq > ?3",
            )?
            .query_row(
                params![
                    device.user.as_str(),
                    device.device.to_string(),
                    i64::try_from(after).unwrap_or(i64::MAX)
                ],
                |r| r.get(0),
            )?;
        to_u64(n)
    }

    fn purge(&self, now_ms: i64, keep_since_ms: i64) -> Result<Purged, StoreError> {
        /// Rows per write, so that senders never wait long behind a purge.
        const BATCH: i64 = 5_000;
        let tokens = self.write_unsynced(|tx| {
            Ok(tx
                .prepare_cached("DELETE FROM tokens WHERE expires_at_ms < ?1")?
                .execute([now_ms])?)
        })?;
        let mut messages = 0;
        loop {
            let n = self.write_unsynced(|tx| {
                Ok(tx
                    .prepare_cached(
                        "DELETE FROM payloads WHERE id IN (
                            SELECT id FROM payloads p WHERE kind = ?1 AND created_at_ms < ?2
                            AND NOT EXISTS (SELECT 1 FROM inbox i WHERE i.payload_id = p.id)
                            LIMIT ?3)",
                    )?
                    .execute(params![KIND_APPLICATION, keep_since_ms, BATCH])?)
            })?;
            messages += n;
            if (n as i64) < BATCH {
                break;
            }
        }
        Ok(Purged {
            tokens: tokens as u64,
            messages: messages as u64,
        })
    }

    fn ack(&self, device: &DeviceAddress, up_to: u64) -> Result<u64, StoreError> {
        // A lost ack only makes the device re-read entries it skips by seq.
        self.write_unsynced(|tx| {
            let up_to = i64::try_from(up_to).unwrap_or(i64::MAX);
            let user = device.user.as_str();
            let dev = device.device.to_string();
            // Payloads these entries referred to, to drop once unreferenced.
            let mut payloads: Vec<i64> = Vec::new();
            {
                let mut stmt = tx.prepare_cached(
                    "SELECT DISTINCT payload_id FROM inbox WHERE user = ?1 AND device = ?2 AND seq <= ?3",
                )?;
                let rows = stmt.query_map(params![user, dev, up_to], |r| r.get::<_, i64>(0))?;
                for row in rows {
                    payloads.push(row?);
                }
            }
            let removed = tx
                .prepare_cached("DELETE FROM inbox WHERE user = ?1 AND device = ?2 AND seq <= ?3")?
                .execute(params![user, dev, up_to])?;
            for p in payloads {
                let referenced: Option<i64> = tx
                    .prepare_cached("SELECT 1 FROM inbox WHERE payload_id = ?1 LIMIT 1")?
                    .query_row(params![p], |r| r.get(0))
                    .optional()?;
                if referenced.is_some() {
                    continue;
                }
                // Application payloads keep their row (without the bytes) so
                // that a late retry of the same client_msg_id stays a duplicate.
                tx.prepare_cached(
                    "UPDATE payloads SET bytes = X'' WHERE id = ?1 AND kind = ?2",
                )?
                .execute(params![p, KIND_APPLICATION])?;
                tx.prepare_cached("DELETE FROM payloads WHERE id = ?1 AND kind != ?2")?
                    .execute(params![p, KIND_APPLICATION])?;
            }
            u64::try_from(removed).map_err(|_| StoreError::Corrupt("count".into()))
        })
    }
}

/// One message of a batch: its own refusals are outcomes, database errors
/// abort the batch.
fn append_one(
    tx: &Transaction<'_>,
    m: &NewMessage,
) -> Result<Result<MessageOutcome, StoreError>, StoreError> {
    let Some(current) = current_epoch(tx, &m.conversation)? else {
        return Ok(Err(StoreError::NotFound));
    };
    let member: Option<i64> = tx
        .prepare_cached(
            "SELECT 1 FROM members WHERE conversation = ?1 AND user = ?2 AND device = ?3",
        )?
        .query_row(
            params![
                m.conversation.as_bytes(),
                m.sender.user.as_str(),
                m.sender.device.to_string()
            ],
            |r| r.get(0),
        )
        .optional()?;
    if member.is_none() {
        return Ok(Err(StoreError::NotMember));
    }
    let dup: Option<i64> = tx
        .prepare_cached(
            "SELECT id FROM payloads WHERE sender_user = ?1 AND sender_device = ?2 AND client_msg_id = ?3",
        )?
        .query_row(
            params![
                m.sender.user.as_str(),
                m.sender.device.to_string(),
                &m.client_msg_id.as_bytes()[..]
            ],
            |r| r.get(0),
        )
        .optional()?;
    if dup.is_some() {
        return Ok(Ok(MessageOutcome {
            duplicate: true,
            recipients: Vec::new(),
        }));
    }
    if current != m.epoch {
        return Ok(Err(StoreError::StaleEpoch { current }));
    }
    let recipients: Vec<DeviceAddress> = roster_of(tx, &m.conversation)?
        .into_iter()
        .filter(|d| *d != m.sender)
        .collect();
    let id = insert_payload(
        tx,
        &m.conversation,
        &m.sender,
        KIND_APPLICATION,
        &m.bytes,
        None,
        Some(&m.client_msg_id),
        m.now_ms,
    )?;
    queue(tx, id, &recipients)?;
    Ok(Ok(MessageOutcome {
        duplicate: false,
        recipients,
    }))
}

#[cfg(test)]
mod tests;
