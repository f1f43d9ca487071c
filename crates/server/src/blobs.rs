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
use std::io::{Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use valise_proto::{BlobId, ErrorCode};

/// Largest blob a device may declare, in MiB (`max_blob_mib`).
pub const DEFAULT_MAX_BLOB_MIB: u64 = 2048;
/// Bytes of blobs one account may keep, in MiB (`blob_quota_mib`).
pub const DEFAULT_BLOB_QUOTA_MIB: u64 = 20 * 1024;
/// A blob not finished, or finished but named by no letter its uploader
/// sends ([`BlobFiles::window`]), within this long of its creation is
/// forgotten, bytes and all (`blob_window_secs`).
pub const DEFAULT_WINDOW: Duration = Duration::from_secs(24 * 3600);

/// The blob files and their limits.
#[derive(Debug)]
pub struct BlobFiles {
    dir: PathBuf,
    /// Largest declared length, in bytes.
    pub max_bytes: u64,
    /// Bytes of blobs one account may declare in all.
    pub quota: u64,
    /// How long a blob may stay unfinished or unlinked (an orphan: its
    /// client crashed before the letter went, or nobody meant to send it)
    /// before housekeeping deletes it and its owner's quota gets it back.
    pub window: Duration,
    /// Blobs with a part being written: a second writer is refused, so
    /// that two racing parts cannot interleave on disk.
    busy: Mutex<HashSet<BlobId>>,
}

/// Holds a blob for one writer; released on drop. Owned: it is held
/// while the part streams in, across awaits.
pub struct Writing {
    files: Arc<BlobFiles>,
    id: BlobId,
}

impl Drop for Writing {
    fn drop(&mut self) {
        lock(&self.files.busy).remove(&self.id);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl BlobFiles {
    /// Opens (and creates) the blob directory.
    pub fn open(dir: &Path, max_bytes: u64, quota: u64, window: Duration) -> std::io::Result<Self> {
        std::fs::create_dir_all(dir)?;
        Ok(Self {
            dir: dir.to_owned(),
            max_bytes,
            quota,
            window,
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
    pub fn writing(self: &Arc<Self>, id: &BlobId) -> Result<Writing, ApiError> {
        if lock(&self.busy).insert(*id) {
            Ok(Writing {
                files: Arc::clone(self),
                id: *id,
            })
        } else {
            Err(ApiError::new(
                ErrorCode::UploadOffset,
                "another part of this blob is being written; ask HEAD where to resume",
            ))
        }
    }

    /// Opens the blob's file for a part at `at`: whatever lay past `at` (a
    /// part that was never acknowledged) is cut off first.
    pub fn open_part(&self, w: &Writing, at: u64) -> Result<File, ApiError> {
        let mut f = OpenOptions::new()
            .write(true)
            .open(self.path(&w.id))
            .map_err(gone)?;
        f.set_len(at)
            .and_then(|()| f.seek(SeekFrom::Start(at)))
            .map_err(io_error)?;
        Ok(f)
    }

    /// Opens the blob's file at `at` for up to `len` bytes, and says how
    /// many it holds there: what the file holds is what is served. A client
    /// checks every byte anyway, and a short answer tells it the blob was
    /// cut, where a failure would pass for the server's.
    pub fn open_range(&self, id: &BlobId, at: u64, len: u64) -> Result<(File, u64), ApiError> {
        let mut f = File::open(self.path(id)).map_err(gone)?;
        let held = f
            .metadata()
            .map_err(io_error)?
            .len()
            .saturating_sub(at)
            .min(len);
        f.seek(SeekFrom::Start(at)).map_err(io_error)?;
        Ok((f, held))
    }

    /// Removes a blob's file (gone already is fine).
    pub fn remove(&self, id: &BlobId) -> std::io::Result<()> {
        match std::fs::remove_file(self.path(id)) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
            _ => Ok(()),
        }
    }
}

/// Bytes of a part written to the file at once.
const WRITE_BYTES: usize = 1 << 20;

/// Receives a part from `body` into `file` (opened by
/// [`BlobFiles::open_part`]) as it arrives, at most `room` bytes (past
/// them, `too_long`), and fsyncs it; returns its length. Each MiB is
/// written on a blocking thread while the next arrives (the window of
/// HTTP/2 flow control keeps moving), and once written the disk is asked
/// to start on it (an fsync in the background), so the fsync that
/// acknowledges the part waits for the tail only: the disk works while the
/// network does. No thread is held while the client is slow to send.
pub async fn receive_part(
    held: &Arc<Writing>,
    file: File,
    body: axum::body::Body,
    room: u64,
    too_long: impl Fn() -> ApiError,
) -> Result<u64, ApiError> {
    let file = Arc::new(file);
    let mut writing = None;
    let received = stream_into(held, &file, body, room, too_long, &mut writing).await;
    // Whatever happened, no write of this part outlives it: the next
    // part's writer would find these bytes under its own. (Should this
    // future be dropped, each write holds the blob until it is done.)
    if let Some(last) = writing {
        let written = last.await;
        if received.is_ok() {
            written?.map_err(io_error)?;
        }
    }
    let received = received?;
    tokio::task::spawn_blocking(move || file.sync_data())
        .await?
        .map_err(io_error)?;
    Ok(received)
}

/// A write or an fsync on a blocking thread.
type FileTask = tokio::task::JoinHandle<std::io::Result<()>>;

/// The loop of [`receive_part`]; the last write may still run in
/// `writing` when it returns.
async fn stream_into(
    held: &Arc<Writing>,
    file: &Arc<File>,
    mut body: axum::body::Body,
    room: u64,
    too_long: impl Fn() -> ApiError,
    writing: &mut Option<FileTask>,
) -> Result<u64, ApiError> {
    use hyper::body::Body as _;
    let mut batch = Vec::with_capacity(WRITE_BYTES);
    let mut received = 0u64;
    let mut syncing: Option<FileTask> = None;
    loop {
        let frame = std::future::poll_fn(|cx| std::pin::Pin::new(&mut body).poll_frame(cx)).await;
        let end = match frame {
            None => true,
            Some(Err(e)) => {
                return Err(ApiError::bad_request(format!(
                    "the part was cut short: {e}"
                )));
            }
            Some(Ok(frame)) => {
                if let Ok(data) = frame.into_data() {
                    received = received.saturating_add(data.len() as u64);
                    if received > room {
                        return Err(too_long());
                    }
                    batch.extend_from_slice(&data);
                }
                false
            }
        };
        if batch.len() >= WRITE_BYTES || (end && !batch.is_empty()) {
            // The batch before is written first (the file grows in order);
            // this one is written while the next arrives.
            if let Some(done) = writing.take() {
                done.await?.map_err(io_error)?;
                // One background fsync at a time; a finished one reports.
                if let Some(done) = syncing.take_if(|h| h.is_finished()) {
                    done.await?.map_err(io_error)?;
                }
                if syncing.is_none() {
                    let f = Arc::clone(file);
                    syncing = Some(tokio::task::spawn_blocking(move || f.sync_data()));
                }
            }
            let bytes = std::mem::replace(&mut batch, Vec::with_capacity(WRITE_BYTES));
            let (f, held) = (Arc::clone(file), Arc::clone(held));
            *writing = Some(tokio::task::spawn_blocking(move || {
                let _held = held;
                (&*f).write_all(&bytes)
            }));
        }
        if end {
            break;
        }
    }
    if let Some(running) = syncing {
        running.await?.map_err(io_error)?;
    }
    Ok(received)
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
