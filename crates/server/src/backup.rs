//! `valised admin backup --out FILE`: a consistent copy of the live
//! database, taken while the server runs.
//!
//! `VACUUM INTO` reads one snapshot of the database (a read transaction:
//! the writer goes on meanwhile), WAL included, and writes it compacted to
//! a new file; a copy of the files with `cp` could catch the database and
//! its WAL at two different moments. The copy is then checked, so that a
//! backup job learns at once that its copy is unusable.
//!
//! The copy holds no secret key (they are files under `keys/` and `tls/`,
//! kept out of the database on purpose): those are backed up separately,
//! offline, see docs/OPERATIONS.md.

use crate::datadir::{DataDir, DataDirError};
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::time::Duration;

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataDirError {
    DataDirError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

/// Copies the database of `dir` to `out`, a file that must not exist yet,
/// readable by its owner only; returns its size in bytes.
pub fn backup(dir: &DataDir, out: &Path) -> Result<u64, DataDirError> {
    if out.exists() {
        return Err(io_err(out, "already exists; a backup never overwrites"));
    }
    let db = dir.db_path();
    let conn =
        rusqlite::Connection::open_with_flags(&db, rusqlite::OpenFlags::SQLITE_OPEN_READ_WRITE)
            .map_err(|e| io_err(&db, e))?;
    // The writer holds its lock for one batch at a time: wait for it.
    conn.busy_timeout(Duration::from_secs(30))
        .map_err(|e| io_err(&db, e))?;
    let target = out
        .to_str()
        .ok_or_else(|| io_err(out, "not a UTF-8 path"))?;
    conn.execute("VACUUM INTO ?1", [target])
        .map_err(|e| io_err(out, e))?;
    drop(conn);
    std::fs::set_permissions(out, std::fs::Permissions::from_mode(0o600))
        .map_err(|e| io_err(out, e))?;
    let copy =
        rusqlite::Connection::open_with_flags(out, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
            .map_err(|e| io_err(out, e))?;
    let check: String = copy
        .query_row("PRAGMA quick_check", [], |r| r.get(0))
        .map_err(|e| io_err(out, e))?;
    if check != "ok" {
        return Err(io_err(out, format!("the copy fails its check: {check}")));
    }
    std::fs::File::open(out)
        .and_then(|f| f.sync_all().and_then(|()| f.metadata()))
        .map(|m| m.len())
        .map_err(|e| io_err(out, e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copies_the_database_once_and_never_over_a_file() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        dir.init("mfa.example", 0).unwrap();
        let out = tmp.path().join("backup.db");
        assert!(backup(&dir, &out).unwrap() > 0);
        let mode = std::fs::metadata(&out).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);
        // The copy opens as a store, migrations and all.
        drop(crate::store::SqliteStore::open(&out).unwrap());
        let again = backup(&dir, &out).unwrap_err();
        assert!(again.to_string().contains("already exists"), "{again}");
    }
}
