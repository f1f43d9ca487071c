//! Attachment blobs on disk: one file per blob under `<data>/blobs/`,
//! named by its id. A part is acknowledged only once it is fsynced, and
//! the store's durable offset moves only then, so an upload killed at any
//! point resumes from an offset whose bytes are on disk.
//!
//! The server holds ciphertext only (the client encrypts and pads, see
//! `valise_proto::blob`): no name, no type, no content, and a size
//! rounded to a bucket.

use crate::error::ApiError;
use std::collections::HashSet;
use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;
use valise_proto::{BlobId, ErrorCode};

/// Largest blob a device may declare, in MiB (`max_blob_mib`).
pub const DEFAULT_MAX_BLOB_MIB: u64 = 2048;
/// Bytes of blobs one account may keep, in MiB (`blob_quota_mib`).
pub const DEFAULT_BLOB_QUOTA_MIB: u64 = 20 * 1024;
/// An upload not finished within this long is forgotten, bytes and all.
pub const INCOMPLETE_TTL: Duration = Duration::from_secs(24 * 3600);

/// The blob files and their limits.
#[derive(Debug)]
pub struct BlobFiles {
    dir: PathBuf,
    /// Largest declared length, in bytes.
    pub max_bytes: u64,
    /// Bytes of blobs one account may declare in all.
    pub quota: u64,
    /// Blobs with a part being written: a second writer is refused, so
    /// that two racing parts cannot interleave on disk.
    busy: Mutex<HashSet<BlobId>>,
}

/// Holds a blob for one writer; released on drop.
pub struct Writing<'a> {
    files: &'a BlobFiles,
    id: BlobId,
}

impl Drop for Writing<'_> {
    fn drop(&mut self) {
        lock(&self.files.busy).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobFiles {
    /// Opens (and creates) the blob directory.
    pub fn open(dir: &Path, max_bytes: u64, quota: u64) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            quota,
            busy: Mutex::default(),
        })
    }

    fn path(&self, id: &BlobId) -> PathBuf {
        self.dir.join(id.to_string())
    }

    /// Creates the empty file of a new blob, durably.
    pub fn create(&self, id: &BlobId) -> Result<(), ApiError> {
        File::create_new(self.path(id))
            .and_then(|f| f.sync_all())
            .and_then(|()| File::open(&self.dir)?.sync_all())
            .map_err(io_error)
    }

    /// Takes the blob for one writer, or refuses while another writes.
    pub fn writing(&self, id: &BlobId) -> Result<Writing<'_>, ApiError> {
        if lock(&self.busy).insert(*id) {
            Ok(Writing {
                files: self,
                id: *id,
            })
        } else {
            Err(ApiError::new(
                ErrorCode::UploadOffset,
                "another part of this blob is being written; ask HEAD where to resume",
            ))
        }
    }

    /// Writes `bytes` at `at` and fsyncs them. Whatever lay past `at` (a
    /// part that was never acknowledged) is cut off first.
    pub fn write(&self, w: &Writing<'_>, at: u64, bytes: &[u8]) -> Result<(), ApiError> {
        let mut f = OpenOptions::new()
            .write(true)
            .open(self.path(&w.id))
            .map_err(gone)?;
        f.set_len(at)
            .and_then(|()| f.seek(SeekFrom::Start(at)))
            .and_then(|_| f.write_all(bytes))
            .and_then(|()| f.sync_data())
            .map_err(io_error)
    }

    /// Reads up to `len` bytes from `at`: what the file holds. A client
    /// checks every byte anyway, and a short answer tells it the blob was
    /// cut, where a failure would pass for the server's.
    pub fn read(&self, id: &BlobId, at: u64, len: usize) -> Result<Vec<u8>, ApiError> {
        let mut f = File::open(self.path(id)).map_err(gone)?;
        let mut out = Vec::with_capacity(len);
        f.seek(SeekFrom::Start(at))
            .and_then(|_| f.take(len as u64).read_to_end(&mut out))
            .map_err(io_error)?;
        Ok(out)
    }

    /// Removes a blob's file (gone already is fine).
    pub fn remove(&self, id: &BlobId) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// A blob's file that is not there: expiry removed it after its record
/// was read, or a crash came between record and file. Not the server's
/// failure: the blob is gone, as if its record had been.
fn gone(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::NotFound {
        ApiError::new(ErrorCode::NotFound, "no such blob")
    } else {
        io_error(e)
    }
}

/// A full disk is `storage_full`; anything else is the server's failure.
fn io_error(e: std::io::Error) -> ApiError {
    if e.kind() == std::io::ErrorKind::StorageFull {
        ApiError::from(crate::store::StoreError::Full)
    } else {
        ApiError::internal(format!("blob file: {e}"))
    }
}
