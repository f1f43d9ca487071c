//! The writer: one thread owns every write to the delivery log. Handlers
//! queue a [`LogWrite`] and wait; the writer takes everything queued,
//! writes it in one transaction (one fsync for the batch, "group commit"),
//! and only once it is durable wakes the devices whose inbox grew and
//! answers. Acknowledgements are queued without an answer.
//!
//! The queue is bounded by bytes, not by count: a flood of large letters
//! waits for room before it costs memory.

use crate::error::ApiError;
use crate::store::{LogWrite, LogWritten, Store, StoreError};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use valise_proto::DeviceAddress;

/// Most writes in one transaction.
const MAX_BATCH: usize = 1024;
/// Bytes of letters and commits waiting for the writer, in KiB.
const QUEUE_KIB: u32 = 64 * 1024;

/// Per-device wake-ups for long-polling inbox reads.
#[derive(Debug, Default)]
pub struct Wakeups {
    devices: Mutex<HashMap<DeviceAddress, Arc<Notify>>>,
}

impl Wakeups {
    /// The notifier of one device (created on first use).
    pub fn of(&self, device: &DeviceAddress) -> Arc<Notify> {
        let mut map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(device.clone()).or_default().clone()
    }

    /// Wakes every waiting poll of these devices.
    pub fn poke<'a>(&self, devices: impl IntoIterator<Item = &'a DeviceAddress>) {
        let map = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        for d in devices {
            if let Some(n) = map.get(d) {
                n.notify_waiters();
            }
        }
    }
}

struct Job {
    write: LogWrite,
    reply: Option<oneshot::Sender<Result<LogWritten, StoreError>>>,
    /// Room in the queue, given back once written.
    room: Option<OwnedSemaphorePermit>,
}

/// Handle to the writer.
#[derive(Clone, Debug)]
pub struct Delivery {
    tx: mpsc::UnboundedSender<Job>,
    room: Arc<Semaphore>,
    /// Writes queued or being written, for `/metrics`.
    queued: Arc<AtomicUsize>,
}

impl std::fmt::Debug for Job {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Job")
    }
}

impl Delivery {
    /// Starts the writer on a thread of its own (from the runtime's
    /// blocking pool); it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>, wakeups: Arc<Wakeups>) -> Self {
        let (tx, rx) = mpsc::unbounded_channel();
        let queued = Arc::new(AtomicUsize::new(0));
        let written = queued.clone();
        tokio::task::spawn_blocking(move || writer(store.as_ref(), &wakeups, &written, rx));
        Self {
            tx,
            room: Arc::new(Semaphore::new(QUEUE_KIB as usize)),
            queued,
        }
    }

    /// How much waits for the writer or is being written: KiB of letters
    /// and commits (each rounded up), and writes (acknowledgements too).
    pub fn queued(&self) -> (usize, usize) {
        (
            (QUEUE_KIB as usize).saturating_sub(self.room.available_permits()),
            self.queued.load(Ordering::Relaxed),
        )
    }

    fn send(&self, job: Job) -> Result<(), ApiError> {
        self.queued.fetch_add(1, Ordering::Relaxed);
        self.tx.send(job).map_err(|_| {
            self.queued.fetch_sub(1, Ordering::Relaxed);
            ApiError::internal("delivery writer stopped")
        })
    }

    /// Queues a write of about `bytes` and waits until it is durable.
    pub async fn write(&self, write: LogWrite, bytes: usize) -> Result<LogWritten, ApiError> {
        let kib = u32::try_from(bytes / 1024 + 1)
            .unwrap_or(QUEUE_KIB)
            .min(QUEUE_KIB);
        let room = self
            .room
            .clone()
            .acquire_many_owned(kib)
            .await
            .map_err(|_| ApiError::internal("delivery writer stopped"))?;
        let (reply, answer) = oneshot::channel();
        self.send(Job {
            write,
            reply: Some(reply),
            room: Some(room),
        })?;
        let written = answer
            .await
            .map_err(|_| ApiError::internal("delivery writer dropped a write"))?;
        Ok(written?)
    }

    /// Queues an acknowledgement without waiting: a lost one only makes
    /// the device read again what it skips by position.
    pub fn ack(&self, write: LogWrite) {
        let _ = self.send(Job {
            write,
            reply: None,
            room: None,
        });
    }
}

fn writer(
    store: &dyn Store,
    wakeups: &Wakeups,
    queued: &AtomicUsize,
    mut rx: mpsc::UnboundedReceiver<Job>,
) {
    let mut jobs = Vec::with_capacity(MAX_BATCH);
    while let Some(first) = rx.blocking_recv() {
        jobs.push(first);
        while jobs.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(job) => jobs.push(job),
                Err(_) => break,
            }
        }
        let (writes, replies): (Vec<_>, Vec<_>) =
            jobs.drain(..).map(|j| (j.write, (j.reply, j.room))).unzip();
        let (count, started) = (writes.len(), std::time::Instant::now());
        let result = store.write_log(writes);
        queued.fetch_sub(count, Ordering::Relaxed);
        // Batch size and write time (fsync included) tell whether senders
        // wait for the disk or the disk for senders (BENCHMARKS.md).
        tracing::debug!(
            writes = count,
            micros = started.elapsed().as_micros() as u64,
            "batch written"
        );
        match result {
            Ok(batch) => {
                wakeups.poke(&batch.wake);
                for ((reply, _room), written) in replies.into_iter().zip(batch.written) {
                    if let Some(reply) = reply {
                        let _ = reply.send(Ok(written));
                    }
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "log batch failed; nothing stored");
                let full = matches!(e, StoreError::Full);
                let text = e.to_string();
                for (reply, _room) in replies {
                    if let Some(reply) = reply {
                        let _ = reply.send(Err(if full {
                            StoreError::Full
                        } else {
                            StoreError::Sqlite(text.clone())
                        }));
                    }
                }
            }
        }
    }
}
