//! The embedded SQLite backend: one file, WAL, one writer connection behind a
//! mutex (SQLite serialises writers anyway) with the delivery log's hot
//! state ([`log`]), a few reader connections so that inbox reads do not
//! wait for writes, and a checkpointer thread so that commits never do a
//! checkpoint's work.

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
    include_str!("migrations/0005_log.sql"),
    include_str!("migrations/0006_audit.sql"),
    include_str!("migrations/0007_security_desk.sql"),
    include_str!("migrations/0008_server_alerts.sql"),
    include_str!("migrations/0009_blobs.sql"),
    include_str!("migrations/0010_attestations.sql"),
    include_str!("migrations/0011_blob_links.sql"),
];

mod audit;
mod blobs;
mod checkpoint;
mod devices;
mod key_packages;
pub mod log;
#[cfg(feature = "adversary")]
mod tamper;

const READERS: usize = 4;

/// SQLite implementation of [`Store`].
pub struct SqliteStore {
    writer: Mutex<Writer>,
    readers: Vec<Mutex<Connection>>,
    next_reader: AtomicUsize,
    shared: log::Shared,
    _checkpointer: checkpoint::Checkpointer,
}

/// The one write connection and what the log's writer keeps in memory.
struct Writer {
    conn: Connection,
    log: log::LogState,
}

fn configure(conn: &Connection) -> Result<(), StoreError> {
    conn.busy_timeout(std::time::Duration::from_millis(5000))?;
    // Checkpoints are the checkpointer thread's, never a commit's.
    conn.execute_batch(
        "PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON; \
         PRAGMA wal_autocheckpoint=0;",
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
        #[cfg(feature = "adversary")]
        tamper::prepare(&writer)?;
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
        let shared = log::Shared::new();
        shared.load_heads(&writer)?;
        Ok(Self {
            writer: Mutex::new(Writer {
                conn: writer,
                log: log::LogState::default(),
            }),
            readers,
            next_reader: AtomicUsize::new(0),
            shared,
            _checkpointer: checkpoint::Checkpointer::start(path)?,
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
        lock(&self.readers[i])
    }

    fn write<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_with(|tx, _| f(tx))
    }

    /// A write that also uses the log writer's state (dropped if it fails).
    fn write_with<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut log::LogState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(true, f)
    }

    /// A write that may be lost in a power cut without harm (the next
    /// synced commit makes it durable anyway), so it skips the fsync.
    fn write_unsynced<T>(
        &self,
        f: impl FnOnce(&Transaction<'_>, &mut log::LogState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        self.write_as(false, f)
    }

    /// Every write sets its own sync level first, so that one whose level
    /// could not be put back never leaves later letters unsynced.
    fn write_as<T>(
        &self,
        synced: bool,
        f: impl FnOnce(&Transaction<'_>, &mut log::LogState) -> Result<T, StoreError>,
    ) -> Result<T, StoreError> {
        let mut w = lock(&self.writer);
        let Writer { conn, log } = &mut *w;
        let level = if synced { "FULL" } else { "NORMAL" };
        let out = (|| {
            conn.pragma_update(None, "synchronous", level)?;
            let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
            let out = f(&tx, log)?;
            tx.commit()?;
            Ok(out)
        })();
        if out.is_err() {
            log.reset();
        }
        out
    }
}

/// The accreditation authority's key, if set (`migrations/0010_attestations.sql`).
fn authority(conn: &Connection) -> Result<Option<String>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT key FROM accreditation_authority WHERE only = 1")?
        .query_row([], |r| r.get::<_, String>(0))
        .optional()?)
}

impl Store for SqliteStore {
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

    fn queue_audit(&self, entry: &[u8]) -> Result<(), StoreError> {
        self.write(|tx| audit::queue(tx, entry))
    }

    fn queued_audit(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        audit::queued(&self.reader(), limit)
    }

    fn append_audit(&self, batch: &AuditBatch) -> Result<(), StoreError> {
        self.write(|tx| audit::append(tx, batch))
    }

    fn audit_size(&self) -> Result<u64, StoreError> {
        audit::size(&self.reader())
    }

    fn audit_position(&self) -> Result<u64, StoreError> {
        audit::position(&self.reader())
    }

    fn audit_nodes(&self, nodes: &[Subtree]) -> Result<Vec<Hash>, StoreError> {
        audit::nodes(&self.reader(), nodes)
    }

    fn audit_entries(&self, start: u64, count: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        audit::entries(&self.reader(), start, count)
    }

    fn latest_audit_checkpoint(&self) -> Result<Option<String>, StoreError> {
        audit::latest_checkpoint(&self.reader())
    }

    fn audit_checkpoints(&self) -> Result<Vec<String>, StoreError> {
        audit::checkpoints(&self.reader())
    }

    fn audit_account(
        &self,
        user: &UserId,
        from: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError> {
        audit::account(&self.reader(), user, from, below, limit)
    }

    fn alerts_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError> {
        audit::alerts_from(&self.reader(), from, limit)
    }

    fn create_blob(&self, b: &BlobRecord, quota: u64) -> Result<(), StoreError> {
        self.write(|tx| blobs::create(tx, b, quota))
    }

    fn blob(&self, id: &BlobId) -> Result<Option<BlobRecord>, StoreError> {
        blobs::get(&self.reader(), id)
    }

    fn blob_part(&self, id: &BlobId, from: u64, to: u64) -> Result<(), StoreError> {
        self.write(|tx| blobs::part(tx, id, from, to))
    }

    fn link_blobs(&self, owner: &UserId, ids: &[BlobId]) -> Result<Vec<BlobId>, StoreError> {
        self.write(|tx| blobs::link(tx, owner, ids))
    }

    fn expire_blobs(&self, before_ms: i64) -> Result<Vec<BlobId>, StoreError> {
        self.write(|tx| blobs::expire(tx, before_ms))
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

    fn write_log(&self, batch: Vec<LogWrite>) -> Result<LogBatch, StoreError> {
        // Acknowledgements alone need no fsync: a lost one only makes a
        // device read again what it skips by position.
        let acks_only = batch.iter().all(|w| matches!(w, LogWrite::Ack { .. }));
        let shared = &self.shared;
        let write = |tx: &Transaction<'_>, state: &mut log::LogState| {
            log::write_batch(tx, state, shared, batch)
        };
        let (written, published) = if acks_only {
            self.write_unsynced(write)?
        } else {
            self.write_with(write)?
        };
        log::publish(shared, published);
        Ok(written)
    }

    fn inbox(
        &self,
        device: &DeviceAddress,
        after: Option<Position>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<InboxRead, StoreError> {
        let conn = self.reader();
        log::inbox(
            &conn,
            &self.shared,
            device,
            after,
            limit,
            max_bytes,
            #[cfg(feature = "adversary")]
            &tamper::hidden(&conn, &self.shared, device)?,
        )
    }

    fn inbox_count(
        &self,
        device: &DeviceAddress,
        after: Option<Position>,
    ) -> Result<u64, StoreError> {
        log::inbox_count(&self.reader(), &self.shared, device, after)
    }

    fn set_account_quota(&self, bytes: u64) {
        self.shared.set_quota(bytes);
    }

    fn collect_garbage(&self, max_rows: usize) -> Result<u64, StoreError> {
        // Lost in a power cut, it is only done again.
        self.write_unsynced(|tx, state| log::collect(tx, state, max_rows))
    }

    fn security_desk(&self) -> Result<Option<UserId>, StoreError> {
        self.reader()
            .prepare_cached("SELECT user FROM security_desk WHERE only = 1")?
            .query_row([], |r| r.get::<_, String>(0))
            .optional()?
            .map(|u| parse_user(&u))
            .transpose()
    }

    fn set_security_desk(&self, user: &UserId, now_ms: i64) -> Result<Option<UserId>, StoreError> {
        self.write(|tx| {
            let before = tx
                .query_row("SELECT user FROM security_desk WHERE only = 1", [], |r| {
                    r.get::<_, String>(0)
                })
                .optional()?
                .map(|u| parse_user(&u))
                .transpose()?;
            tx.execute(
                "INSERT INTO security_desk (only, user, set_at_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (only) DO UPDATE SET user = excluded.user,
                    set_at_ms = excluded.set_at_ms",
                params![user.as_str(), now_ms],
            )?;
            Ok(before)
        })
    }

    fn accreditation_authority(&self) -> Result<Option<String>, StoreError> {
        authority(&self.reader())
    }

    fn set_accreditation_authority(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError> {
        self.write(|tx| {
            let before = authority(tx)?;
            tx.execute(
                "INSERT INTO accreditation_authority (only, key, set_at_ms) VALUES (1, ?1, ?2)
                 ON CONFLICT (only) DO UPDATE SET key = excluded.key,
                    set_at_ms = excluded.set_at_ms",
                params![key, now_ms],
            )?;
            Ok(before)
        })
    }

    fn add_attestation(
        &self,
        user: &UserId,
        attestation: &[u8],
        expired: &dyn Fn(&[u8]) -> bool,
        max: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        self.write(|tx| {
            let (gone, kept): (Vec<_>, Vec<_>) = devices::user(tx, user)?
                .attestations
                .into_iter()
                .partition(|a| expired(a));
            for a in &gone {
                tx.prepare_cached("DELETE FROM attestations WHERE user = ?1 AND attestation = ?2")?
                    .execute(params![user.as_str(), a])?;
            }
            if kept.len() >= max && !kept.iter().any(|a| a == attestation) {
                return Err(StoreError::QuotaExceeded);
            }
            let added = tx
                .prepare_cached(
                    "INSERT INTO attestations (user, attestation, published_at_ms)
                     VALUES (?1, ?2, ?3) ON CONFLICT DO NOTHING",
                )?
                .execute(params![user.as_str(), attestation, now_ms])?;
            if added == 1 || !gone.is_empty() {
                mark_pending(tx, user, now_ms)?;
            }
            Ok(added == 1)
        })
    }

    fn purge(&self, now_ms: i64, keep_since_ms: i64) -> Result<Purged, StoreError> {
        /// Rows per write, so that senders never wait long behind a purge.
        const BATCH: i64 = 5_000;
        let tokens = self.write_unsynced(|tx, _| {
            Ok(tx
                .prepare_cached("DELETE FROM tokens WHERE expires_at_ms < ?1")?
                .execute([now_ms])?)
        })?;
        let mut message_ids = 0;
        loop {
            let n = self.write_unsynced(|tx, _| {
                Ok(tx
                    .prepare_cached(
                        "DELETE FROM sent_ids WHERE (sender, msg_id) IN (
                            SELECT sender, msg_id FROM sent_ids WHERE at_ms < ?1 LIMIT ?2)",
                    )?
                    .execute(params![keep_since_ms, BATCH])?)
            })?;
            message_ids += n;
            if (n as i64) < BATCH {
                break;
            }
        }
        Ok(Purged {
            tokens: tokens as u64,
            message_ids: message_ids as u64,
        })
    }
}

#[cfg(test)]
mod tests;
