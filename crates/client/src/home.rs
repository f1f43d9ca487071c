//! A device's home: one directory with one SQLite database, sealed at rest,
//! and the only place where the client engine speaks SQL.
//!
//! The whole database (openmls state, keys, letters, and its WAL) is
//! encrypted by SQLCipher under a key derived by Argon2id from the user's
//! passphrase. Beside it, `kdf.json` holds only the salt and cost
//! parameters, so a copy of the home without the passphrase yields neither
//! plaintext nor a usable key.
//!
//! [`Home`]'s methods are split by what they keep, one file each:
//! [`account`], [`conversations`], [`commits`], [`letters`], [`held`],
//! [`outbox`], [`uploads`] (attachments), [`alerts`], [`directory`],
//! [`desk`], [`accreditation`] and [`mail`] (the mail bridge's folders);
//! [`lock`] says which process may use the home, and when.
//! openmls keeps its group state
//! in its own tables of the same database (through [`crate::provider`]),
//! so an MLS operation and its effect on ours commit in one transaction.

pub mod account;
pub mod accreditation;
pub mod alerts;
pub mod attachment_cache;
pub mod commits;
pub mod conversations;
pub mod desk;
pub mod directory;
pub mod held;
pub mod letters;
pub mod lock;
pub mod mail;
pub mod outbox;
pub mod uploads;

use crate::error::{ClientError, Result};
use argon2::{Algorithm, Argon2, Params, Version};
use rand::RngCore;
use rusqlite::types::Type;
use rusqlite::{Connection, Row};
use serde::{Deserialize, Serialize};
use std::path::Path;
use zeroize::Zeroizing;

const DB_FILE: &str = "valise.db";
const KDF_FILE: &str = "kdf.json";
const LOCK_FILE: &str = "lock";

/// A passphrase, wiped from memory when dropped; never printed.
pub struct Passphrase(Zeroizing<String>);

impl Passphrase {
    pub fn new(s: String) -> Self {
        Self(Zeroizing::new(s))
    }
}

impl std::fmt::Debug for Passphrase {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Passphrase(***)")
    }
}

/// Argon2id cost and salt, stored in clear beside the database.
#[derive(Serialize, Deserialize)]
struct KdfParams {
    algorithm: String,
    salt_hex: String,
    memory_kib: u32,
    iterations: u32,
    parallelism: u32,
}

impl KdfParams {
    /// OWASP-grade cost: 64 MiB, 3 passes; about a third of a second here.
    fn fresh() -> Self {
        let mut salt = [0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self {
            algorithm: "argon2id-v19".into(),
            salt_hex: hex::encode(salt),
            memory_kib: 64 * 1024,
            iterations: 3,
            parallelism: 1,
        }
    }

    fn derive(&self, passphrase: &Passphrase) -> Result<Zeroizing<[u8; 32]>> {
        let bad = |e: String| ClientError::Home(format!("kdf.json: {e}"));
        if self.algorithm != "argon2id-v19" {
            return Err(bad(format!("unknown algorithm {}", self.algorithm)));
        }
        let salt = hex::decode(&self.salt_hex).map_err(|e| bad(e.to_string()))?;
        let params = Params::new(self.memory_kib, self.iterations, self.parallelism, Some(32))
            .map_err(|e| bad(e.to_string()))?;
        let mut key = Zeroizing::new([0u8; 32]);
        Argon2::new(Algorithm::Argon2id, Version::V0x13, params)
            .hash_password_into(passphrase.0.as_bytes(), &salt, key.as_mut())
            .map_err(|e| bad(e.to_string()))?;
        Ok(key)
    }
}

pub use lock::Retake;

/// An open home: its unlocked database connection.
pub struct Home {
    conn: Connection,
    /// Held while the home is in use: two processes on one home could each
    /// encrypt with the same ratchet generation ([`lock`]). A second one
    /// waits. `None` for a home in memory (tests).
    lock: Option<lock::Lock>,
}

impl Home {
    /// Opens the home at `path`, creating it (and choosing a fresh salt) if
    /// it does not exist yet.
    pub fn open_or_create(path: &Path, passphrase: &Passphrase) -> Result<Self> {
        let kdf_path = path.join(KDF_FILE);
        let io = |e: std::io::Error| ClientError::Home(format!("{}: {e}", path.display()));
        let params = if kdf_path.exists() {
            let text = std::fs::read_to_string(&kdf_path).map_err(io)?;
            serde_json::from_str(&text)
                .map_err(|e| ClientError::Home(format!("{}: {e}", kdf_path.display())))?
        } else {
            std::fs::create_dir_all(path).map_err(io)?;
            restrict_dir(path)?;
            let params = KdfParams::fresh();
            let text = serde_json::to_string_pretty(&params)
                .map_err(|e| ClientError::Home(e.to_string()))?;
            std::fs::write(&kdf_path, text).map_err(io)?;
            params
        };
        // Argon2 first: the home is not kept from others meanwhile.
        let key = params.derive(passphrase)?;
        let lock = lock::Lock::take(path)?;
        let conn = Connection::open(path.join(DB_FILE))?;
        let key_hex = Zeroizing::new(hex::encode(key.as_ref()));
        let pragma = Zeroizing::new(format!("PRAGMA key = \"x'{}'\";", key_hex.as_str()));
        conn.execute_batch(&pragma)?;
        // The first read fails under a wrong key ("file is not a database").
        conn.query_row("SELECT count(*) FROM sqlite_master", [], |r| {
            r.get::<_, i64>(0)
        })
        .map_err(|_| ClientError::WrongPassphrase)?;
        conn.execute_batch(
            "PRAGMA journal_mode = WAL;
             PRAGMA synchronous = FULL;
             PRAGMA foreign_keys = ON;
             PRAGMA busy_timeout = 5000;",
        )?;
        let mut home = Self {
            conn,
            lock: Some(lock),
        };
        home.migrate()?;
        home.note_data_version()?;
        Ok(home)
    }

    /// A home in memory, unsealed: for tests of the engine without disk.
    pub fn in_memory() -> Result<Self> {
        let mut home = Self {
            conn: Connection::open_in_memory()?,
            lock: None,
        };
        home.migrate()?;
        Ok(home)
    }

    /// The connection, for openmls' storage provider only: our own SQL
    /// stays in this module.
    pub(crate) fn connection(&self) -> &Connection {
        &self.conn
    }

    /// Runs `f` atomically: everything it wrote stays, or nothing. Nests
    /// (a savepoint), so a caller's transaction can hold several.
    pub fn transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        self.transaction_keeping(f, |_| true)
    }

    /// As [`Home::transaction`], but what `f` wrote stays only if `keep`
    /// says so of its result (an entry that must wait for a proof is
    /// undone, yet is no error).
    pub fn transaction_keeping<T>(
        &self,
        f: impl FnOnce() -> Result<T>,
        keep: impl FnOnce(&T) -> bool,
    ) -> Result<T> {
        self.conn.execute_batch("SAVEPOINT home")?;
        let out = f();
        if out.as_ref().is_ok_and(keep) {
            self.conn.execute_batch("RELEASE home")?;
        } else {
            self.conn.execute_batch("ROLLBACK TO home; RELEASE home")?;
        }
        out
    }

    /// Starts a transaction that stays open across network calls (an inbox
    /// page and the directory lookups it needs; a rejoin and the hub's
    /// answer): this process holds the home's lock meanwhile ([`lock`]),
    /// so nothing interleaves.
    pub fn begin(&self) -> Result<()> {
        self.conn.execute_batch("BEGIN IMMEDIATE")?;
        Ok(())
    }

    /// Commits (`keep`) or rolls back what [`Home::begin`] started.
    pub fn end(&self, keep: bool) -> Result<()> {
        self.conn
            .execute_batch(if keep { "COMMIT" } else { "ROLLBACK" })?;
        Ok(())
    }

    /// Applies openmls' migrations, then ours (numbered by `user_version`).
    fn migrate(&mut self) -> Result<()> {
        let version: usize = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))?;
        if (1..FIRST_CARRIED).contains(&version) {
            return Err(ClientError::Home(
                "this home was made by a Valise from before devices were approved by their \
                 user, and cannot be carried over: enrol this device again in a new home"
                    .into(),
            ));
        }
        crate::provider::run_openmls_migrations(&mut self.conn)?;
        for (i, sql) in MIGRATIONS.iter().enumerate().skip(version) {
            let tx = self.conn.transaction()?;
            tx.execute_batch(sql)?;
            tx.pragma_update(None, "user_version", i + 1)?;
            tx.commit()?;
        }
        Ok(())
    }
}

/// The oldest home this version opens. Before 0006 (identities, device
/// approval) openmls state was stored in another encoding and directory
/// entries had no identity; Valise had no deployment then, so such homes
/// are refused rather than converted.
const FIRST_CARRIED: usize = 6;

/// Our schema, one entry per version; never edit a released entry.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_alerts_pending_commits.sql"),
    include_str!("migrations/0003_directory.sql"),
    include_str!("migrations/0004_letter_counters.sql"),
    include_str!("migrations/0005_epoch_commits.sql"),
    include_str!("migrations/0006_identities.sql"),
    include_str!("migrations/0007_hot_path_indexes.sql"),
    include_str!("migrations/0008_held_letters.sql"),
    include_str!("migrations/0009_inbox_cursor.sql"),
    include_str!("migrations/0010_resend_due.sql"),
    include_str!("migrations/0011_audit_key.sql"),
    include_str!("migrations/0012_security_desk.sql"),
    include_str!("migrations/0013_attachments.sql"),
    include_str!("migrations/0014_accreditation.sql"),
    include_str!("migrations/0015_ceiling.sql"),
    include_str!("migrations/0016_mail_folders.sql"),
    include_str!("migrations/0017_conversation_letters.sql"),
    include_str!("migrations/0018_attachment_cache.sql"),
    include_str!("migrations/0019_mail_drafts.sql"),
    include_str!("migrations/0020_upload_sources.sql"),
    include_str!("migrations/0021_withheld_letters.sql"),
    include_str!("migrations/0022_mail_submitted_message_ids.sql"),
    include_str!("migrations/0023_attachment_cache_budget.sql"),
];

/// Reads a text column and parses it into one of our types.
pub(crate) fn parse_col<T, E>(
    r: &Row<'_>,
    i: usize,
    parse: impl FnOnce(&str) -> std::result::Result<T, E>,
) -> rusqlite::Result<T>
where
    E: std::error::Error + Send + Sync + 'static,
{
    let s: String = r.get(i)?;
    parse(&s).map_err(|e| rusqlite::Error::FromSqlConversionFailure(i, Type::Text, Box::new(e)))
}

#[cfg(unix)]
fn restrict_dir(path: &Path) -> Result<()> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
        .map_err(|e| ClientError::Home(format!("{}: {e}", path.display())))
}

#[cfg(not(unix))]
fn restrict_dir(_: &Path) -> Result<()> {
    Ok(())
}

/// Every statement on the engine's hot paths: sealing a letter (its
/// conversation, the identity check, its number and the previous epoch's
/// count, the outbox), the server's acceptance (`note_accepted`), opening
/// a letter (the sender's key, its number, the root it carries, storing
/// it, alerts and their reports to the security desk: the pinned desk, the
/// kind's budget), letters held for their commit (kept on arrival, taken
/// after every commit), the inbox position, the inbox listing, and on the
/// desk storing a report and streaming them (`alerts --desk --follow`),
/// and the mail bridge's folder indexing, listing, flags and replies. Each
/// runs per letter or per page, so none may scan a table that grows with
/// history (`tests::hot_statements_never_scan`).
#[cfg(test)]
const HOT_PATH: &[&str] = &[
    conversations::BY_ID,
    directory::ANY_CONTACT_CHANGED,
    directory::DIRECTORY,
    directory::ROOT_HASH,
    directory::DEVICE_STATUS,
    directory::DEVICE_STATUS_ANY_KEY,
    directory::PUT_MEMBER_ROOT,
    letters::STORE,
    letters::BY_ID,
    letters::INBOX_AFTER,
    letters::FILE_LETTER,
    letters::NOTE_SENT_EPOCH,
    letters::NOTE_ACCEPTED_COUNT,
    letters::LAST_LETTER,
    letters::COUNT_LETTER,
    letters::LAST_ACCEPTED_BEFORE,
    outbox::PUT,
    outbox::BY_MESSAGE_ID,
    outbox::ALL,
    outbox::DROP,
    held::HOLD,
    held::SIZE,
    held::OLDEST,
    held::REACHED,
    held::UNHOLD_REACHED,
    account::INBOX_CURSOR,
    account::SET_INBOX_CURSOR,
    alerts::INSERT,
    desk::DESK,
    desk::BUDGET,
    desk::PUT_BUDGET,
    desk::STORE_REPORT,
    desk::NOTE_REPORT_SENT,
    desk::REPORTS_AFTER,
    attachment_cache::IS_CACHED,
    attachment_cache::PIECES,
    attachment_cache::TOUCH,
    mail::BY_MESSAGE_ID,
    mail::INDEX_RECEIVED,
    mail::INDEX_SENT,
    mail::INDEX_CONVERSATION,
    mail::ADD_UID,
    mail::ENTRIES_AFTER,
    mail::SET_FLAGS,
    mail::UID_OF,
    mail::DRAFTS_AFTER,
    mail::SET_DRAFT_FLAGS,
    mail::DRAFT,
];

#[cfg(test)]
mod tests {
    use super::*;

    /// Fails on a plan line that reads a whole table (`SCAN t`, also
    /// through an index), except where that is the purpose or the table
    /// cannot grow: `account`, `directory` and `security_desk` hold one
    /// row (`CHECK (id = 1)`), and the outbox listing reads every entry waiting to be sent.
    #[test]
    fn hot_statements_never_scan() {
        let home = Home::in_memory().unwrap();
        let one_row = [
            "SCAN account",
            "SCAN directory",
            "SCAN security_desk",
            "SCAN CONSTANT ROW",
        ];
        let mut scans = Vec::new();
        for sql in HOT_PATH {
            let mut stmt = home
                .conn
                .prepare(&format!("EXPLAIN QUERY PLAN {sql}"))
                .unwrap();
            let unbound = vec![rusqlite::types::Null; stmt.parameter_count()];
            let plan: Vec<String> = stmt
                .query_map(rusqlite::params_from_iter(unbound), |r| {
                    r.get::<_, String>(3)
                })
                .unwrap()
                .collect::<Result<_, _>>()
                .unwrap();
            for line in plan {
                let whole = line.starts_with("SCAN ")
                    && !one_row.iter().any(|ok| line.starts_with(ok))
                    && !(*sql == outbox::ALL && line.starts_with("SCAN outbox"));
                if whole {
                    scans.push(format!("{line}\n    in: {sql}"));
                }
            }
        }
        assert!(scans.is_empty(), "full scans:\n{}", scans.join("\n"));
    }

    #[test]
    fn a_home_from_before_device_approval_is_refused_untouched() {
        let dir = tempfile::tempdir().unwrap();
        let passphrase = Passphrase::new("home tests".into());
        let home = Home::open_or_create(dir.path(), &passphrase).unwrap();
        home.conn
            .pragma_update(None, "user_version", FIRST_CARRIED - 1)
            .unwrap();
        drop(home);
        let err = Home::open_or_create(dir.path(), &passphrase).err().unwrap();
        assert!(err.to_string().contains("enrol this device again"), "{err}");
        let err = Home::open_or_create(dir.path(), &passphrase).err().unwrap();
        assert!(err.to_string().contains("enrol this device again"), "{err}");
    }
}
