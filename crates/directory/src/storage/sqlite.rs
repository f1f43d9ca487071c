//! [`DirectoryStorage`] on SQLite: four tables prefixed `directory_`, created
//! by numbered migrations, in their own file or in the server's.

use super::{
    BackendError, DirectoryStorage, KeyValue, RecordKind, StateQuery, UserState, WriteBatch,
};
use rusqlite::{Connection, OptionalExtension, Row, params};
use std::path::Path;
use std::sync::{Mutex, MutexGuard};
use zeroize::Zeroizing;

/// Numbered migrations, applied in order; the count applied is kept in
/// `directory_schema`.
const MIGRATIONS: &[&str] = &[include_str!("migrations/0001_directory.sql")];

/// The directory's tables on one SQLite connection.
///
/// One connection behind a mutex: akd reads from one task at a time per
/// operation, and SQLite serialises writers anyway.
pub struct SqliteDirectoryStorage {
    conn: Mutex<Connection>,
}

impl std::fmt::Debug for SqliteDirectoryStorage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SqliteDirectoryStorage")
    }
}

fn to_i64(v: u64) -> Result<i64, BackendError> {
    i64::try_from(v).map_err(|_| BackendError(format!("{v} is out of range for SQLite")))
}

fn to_u64(v: i64) -> Result<u64, BackendError> {
    u64::try_from(v).map_err(|_| BackendError(format!("stored {v} is negative")))
}

fn to_hash(b: Vec<u8>) -> Result<[u8; 32], BackendError> {
    b.try_into()
        .map_err(|_| BackendError("stored value is not 32 bytes".into()))
}

/// Raw columns of a state row, converted after the row is released.
type StateRow = (Vec<u8>, i64, i64, i64, Vec<u8>, Vec<u8>);

const STATE_COLUMNS: &str = "username, epoch, version, label_len, label_val, value";

fn state_row(r: &Row<'_>) -> rusqlite::Result<StateRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
    ))
}

fn state_of(row: StateRow) -> Result<UserState, BackendError> {
    let (username, epoch, version, label_len, label_val, value) = row;
    Ok(UserState {
        username,
        epoch: to_u64(epoch)?,
        version: to_u64(version)?,
        label_len: u32::try_from(label_len)
            .map_err(|_| BackendError(format!("stored label length {label_len}")))?,
        label_val: to_hash(label_val)?,
        value,
    })
}

impl SqliteDirectoryStorage {
    /// Opens (or creates) the tables in the SQLite file at `path`, in WAL mode
    /// with full sync (a published epoch survives power loss). The file may
    /// be the server's own database.
    pub fn open(path: &Path) -> Result<Self, BackendError> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(std::time::Duration::from_millis(5000))?;
        conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA synchronous=FULL;")?;
        Self::on_connection(conn)
    }

    /// Uses a connection the caller opened and configured (pragmas, keys);
    /// creates or migrates the directory tables on it.
    pub fn on_connection(mut conn: Connection) -> Result<Self, BackendError> {
        conn.set_prepared_statement_cache_capacity(64);
        Self::migrate(&mut conn)?;
        Ok(Self {
            conn: Mutex::new(conn),
        })
    }

    /// A private in-memory database, for tests and benchmarks.
    pub fn in_memory() -> Result<Self, BackendError> {
        Self::on_connection(Connection::open_in_memory()?)
    }

    fn migrate(conn: &mut Connection) -> Result<(), BackendError> {
        let tx = conn.transaction()?;
        tx.execute_batch("CREATE TABLE IF NOT EXISTS directory_schema (version INTEGER NOT NULL)")?;
        let version: Option<i64> = tx
            .query_row("SELECT version FROM directory_schema", [], |r| r.get(0))
            .optional()?;
        let version = usize::try_from(version.unwrap_or(0)).unwrap_or(usize::MAX);
        if version > MIGRATIONS.len() {
            return Err(BackendError(format!(
                "directory schema version {version} is newer than this build ({})",
                MIGRATIONS.len()
            )));
        }
        for sql in MIGRATIONS.iter().skip(version) {
            tx.execute_batch(sql)?;
        }
        tx.execute("DELETE FROM directory_schema", [])?;
        tx.execute(
            "INSERT INTO directory_schema (version) VALUES (?1)",
            params![to_i64(MIGRATIONS.len() as u64)?],
        )?;
        tx.commit()?;
        Ok(())
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A panic while holding the lock leaves the connection usable: SQLite
        // rolls back an unfinished transaction when it is dropped.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl DirectoryStorage for SqliteDirectoryStorage {
    fn get_records(
        &self,
        kind: RecordKind,
        keys: &[Vec<u8>],
    ) -> Result<Vec<KeyValue>, BackendError> {
        let conn = self.conn();
        let mut stmt = conn
            .prepare_cached("SELECT value FROM directory_records WHERE kind = ?1 AND key = ?2")?;
        let mut out = Vec::with_capacity(keys.len());
        for key in keys {
            let value: Option<Vec<u8>> = stmt
                .query_row(params![kind.code(), key], |r| r.get(0))
                .optional()?;
            if let Some(v) = value {
                out.push((key.clone(), v));
            }
        }
        Ok(out)
    }

    fn get_states(&self, keys: &[(Vec<u8>, u64)]) -> Result<Vec<UserState>, BackendError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM directory_user_states WHERE username = ?1 AND epoch = ?2"
        ))?;
        let mut out = Vec::with_capacity(keys.len());
        for (user, epoch) in keys {
            if let Some(row) = stmt
                .query_row(params![user, to_i64(*epoch)?], state_row)
                .optional()?
            {
                out.push(state_of(row)?);
            }
        }
        Ok(out)
    }

    fn write(&self, batch: WriteBatch) -> Result<(), BackendError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        {
            let mut rec = tx.prepare_cached(
                "INSERT OR REPLACE INTO directory_records (kind, key, value) VALUES (?1, ?2, ?3)",
            )?;
            for (kind, key, value) in &batch.records {
                rec.execute(params![kind.code(), key, value])?;
            }
            let mut st = tx.prepare_cached(&format!(
                "INSERT OR REPLACE INTO directory_user_states ({STATE_COLUMNS}) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)"
            ))?;
            for s in &batch.states {
                st.execute(params![
                    s.username,
                    to_i64(s.epoch)?,
                    to_i64(s.version)?,
                    i64::from(s.label_len),
                    &s.label_val[..],
                    s.value
                ])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    fn user_states(&self, username: &[u8]) -> Result<Vec<UserState>, BackendError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&format!(
            "SELECT {STATE_COLUMNS} FROM directory_user_states WHERE username = ?1 ORDER BY epoch"
        ))?;
        let rows = stmt
            .query_map(params![username], state_row)?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter().map(state_of).collect()
    }

    fn user_state(
        &self,
        username: &[u8],
        query: StateQuery,
    ) -> Result<Option<UserState>, BackendError> {
        let base = format!("SELECT {STATE_COLUMNS} FROM directory_user_states WHERE username = ?1");
        let (sql, arg) = match query {
            StateQuery::Version(v) => (
                format!("{base} AND version = ?2 ORDER BY epoch LIMIT 1"),
                Some(v),
            ),
            StateQuery::Epoch(e) => (format!("{base} AND epoch = ?2"), Some(e)),
            StateQuery::AtOrBefore(e) => (
                format!("{base} AND epoch <= ?2 ORDER BY epoch DESC LIMIT 1"),
                Some(e),
            ),
            StateQuery::Latest => (format!("{base} ORDER BY epoch DESC LIMIT 1"), None),
            StateQuery::Earliest => (format!("{base} ORDER BY epoch LIMIT 1"), None),
        };
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(&sql)?;
        let row = match arg {
            // Values above i64::MAX cannot be stored, so they match nothing.
            Some(a) => match i64::try_from(a) {
                Ok(a) => stmt.query_row(params![username, a], state_row).optional()?,
                Err(_) if matches!(query, StateQuery::AtOrBefore(_)) => stmt
                    .query_row(params![username, i64::MAX], state_row)
                    .optional()?,
                Err(_) => None,
            },
            None => stmt.query_row(params![username], state_row).optional()?,
        };
        row.map(state_of).transpose()
    }

    fn get_secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BackendError> {
        let conn = self.conn();
        let v: Option<Vec<u8>> = conn
            .prepare_cached("SELECT value FROM directory_secrets WHERE name = ?1")?
            .query_row(params![name], |r| r.get(0))
            .optional()?;
        Ok(v.map(Zeroizing::new))
    }

    fn insert_secret_if_absent(
        &self,
        name: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.execute(
            "INSERT OR IGNORE INTO directory_secrets (name, value) VALUES (?1, ?2)",
            params![name, value],
        )?;
        let stored: Vec<u8> = tx.query_row(
            "SELECT value FROM directory_secrets WHERE name = ?1",
            params![name],
            |r| r.get(0),
        )?;
        tx.commit()?;
        Ok(Zeroizing::new(stored))
    }

    fn put_epoch_root(&self, epoch: u64, root_hash: [u8; 32]) -> Result<(), BackendError> {
        self.conn()
            .prepare_cached(
                "INSERT OR REPLACE INTO directory_epoch_roots (epoch, root_hash) VALUES (?1, ?2)",
            )?
            .execute(params![to_i64(epoch)?, &root_hash[..]])?;
        Ok(())
    }

    fn epoch_roots(&self, from: u64, to: u64) -> Result<Vec<(u64, [u8; 32])>, BackendError> {
        let conn = self.conn();
        let mut stmt = conn.prepare_cached(
            "SELECT epoch, root_hash FROM directory_epoch_roots \
             WHERE epoch >= ?1 AND epoch <= ?2 ORDER BY epoch",
        )?;
        let rows = stmt
            .query_map(params![to_i64(from)?, to_i64(to)?], |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        rows.into_iter()
            .map(|(e, h)| Ok((to_u64(e)?, to_hash(h)?)))
            .collect()
    }
}
