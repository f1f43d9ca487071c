//! The home's lock: one process uses a home at a time, one operation at a
//! time.
//!
//! Two processes sealing from one MLS state would encrypt under the same
//! ratchet generation (a nonce reuse), and two multi-step operations
//! interleaved would lose each other's writes. So a process holds
//! `<home>/lock` (an exclusive `flock`, released by the kernel if the
//! process dies) while it uses the home. A one-shot command holds it from
//! open to exit. A long-running front end (the mail bridge) holds it per
//! operation: it [releases](crate::Client::release_home) the home between
//! operations so that `valise` commands run beside it, and when it
//! [takes it back](crate::Client::try_retake_home) learns from SQLite's
//! `data_version` whether another process committed meanwhile, in which
//! case whatever it kept in memory (MLS groups above all) is stale and
//! must be read again.
//!
//! `data_version` rather than a counter of our own: SQLite changes it on
//! every commit by any other connection, so no write path can forget to
//! bump it.

use super::Home;
use crate::error::{ClientError, Result};
use rusqlite::Connection;
use std::fs::{File, TryLockError};
use std::path::Path;

/// The lock file of an open home.
pub(super) struct Lock {
    file: File,
    held: bool,
    /// `data_version` when this process last took the lock.
    data_version: i64,
}

/// What taking the home back ([`crate::Client::try_retake_home`]) found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Retake {
    /// Another process uses the home: try again later.
    Busy,
    /// Taken back; no other process committed since it was released.
    Unchanged,
    /// Taken back; another process committed since it was released, so
    /// whatever was kept in memory from the database may be stale.
    Changed,
}

impl Lock {
    /// Opens `<home>/lock` and waits until no other process holds it.
    pub(super) fn take(path: &Path) -> Result<Self> {
        let io = |e: std::io::Error| ClientError::Home(format!("{}: {e}", path.display()));
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(path.join(super::LOCK_FILE))
            .map_err(io)?;
        file.lock().map_err(io)?;
        Ok(Self {
            file,
            held: true,
            data_version: 0,
        })
    }
}

fn data_version(conn: &Connection) -> Result<i64> {
    Ok(conn.query_row("PRAGMA data_version", [], |r| r.get(0))?)
}

impl Home {
    /// Remembers where the database stands as the lock is taken (once
    /// the connection is open).
    pub(super) fn note_data_version(&mut self) -> Result<()> {
        if let Some(lock) = &mut self.lock {
            lock.data_version = data_version(&self.conn)?;
        }
        Ok(())
    }

    /// Lets other processes use the home until [`Home::try_retake`]; the
    /// home must not be used meanwhile. A transaction still open was
    /// abandoned half-way (its operation was cancelled): it is rolled back,
    /// as a crash would, and `true` says so (what was kept in memory may be
    /// ahead of the database).
    pub(crate) fn release(&mut self) -> Result<bool> {
        let Some(lock) = &mut self.lock else {
            return Ok(false);
        };
        if !lock.held {
            return Ok(false);
        }
        let abandoned = !self.conn.is_autocommit();
        if abandoned {
            self.conn.execute_batch("ROLLBACK")?;
        }
        lock.file
            .unlock()
            .map_err(|e| ClientError::Home(format!("releasing the home: {e}")))?;
        lock.held = false;
        Ok(abandoned)
    }

    /// Takes the home back after [`Home::release`] unless another process
    /// uses it, and says whether one wrote to it meanwhile.
    pub(crate) fn try_retake(&mut self) -> Result<Retake> {
        let Some(lock) = &mut self.lock else {
            return Ok(Retake::Unchanged);
        };
        if lock.held {
            return Ok(Retake::Unchanged);
        }
        match lock.file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => return Ok(Retake::Busy),
            Err(TryLockError::Error(e)) => {
                return Err(ClientError::Home(format!("taking the home back: {e}")));
            }
        }
        let now = match data_version(&self.conn) {
            Ok(v) => v,
            Err(e) => {
                // Not held without knowing what changed.
                let _ = lock.file.unlock();
                return Err(e);
            }
        };
        lock.held = true;
        let changed = std::mem::replace(&mut lock.data_version, now) != now;
        Ok(if changed {
            Retake::Changed
        } else {
            Retake::Unchanged
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::home::Passphrase;

    fn open(dir: &Path) -> Home {
        Home::open_or_create(dir, &Passphrase::new("lock tests".into())).unwrap()
    }

    fn alert(home: &Home, detail: &str) {
        home.insert_alert(0, "test", None, detail, None).unwrap();
    }

    #[test]
    fn a_released_home_is_shared_and_writes_by_others_are_noticed() {
        let dir = tempfile::tempdir().unwrap();
        let mut first = open(dir.path());
        first.release().unwrap();
        assert_eq!(first.try_retake().unwrap(), Retake::Unchanged);
        first.release().unwrap();

        let second = open(dir.path());
        assert_eq!(first.try_retake().unwrap(), Retake::Busy, "one at a time");
        alert(&second, "by the second");
        drop(second);
        assert_eq!(first.try_retake().unwrap(), Retake::Changed);
        assert_eq!(first.alerts(false).unwrap().len(), 1);

        // Its own writes are not news.
        alert(&first, "by the first");
        first.release().unwrap();
        assert_eq!(first.try_retake().unwrap(), Retake::Unchanged);
    }

    #[test]
    fn an_abandoned_transaction_is_rolled_back_on_release() {
        let dir = tempfile::tempdir().unwrap();
        let mut home = open(dir.path());
        home.begin().unwrap();
        alert(&home, "half-way");
        assert!(home.release().unwrap(), "said so");
        let other = open(dir.path());
        assert!(other.alerts(false).unwrap().is_empty());
    }
}
