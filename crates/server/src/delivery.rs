//! The hot path: application messages are written in batches ("group
//! commit"). Handlers queue a message and wait; one writer task takes
//! everything queued, writes it in one transaction (one fsync for the
//! batch), then answers each handler and wakes the recipients' long polls.

use crate::error::ApiError;
use crate::store::{MessageOutcome, NewMessage, Store, StoreError};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tokio::sync::{Notify, mpsc, oneshot};
use valise_proto::DeviceAddress;

/// Most messages written in one transaction.
const MAX_BATCH: usize = 1000;
/// Messages waiting for the writer before senders wait for room.
const QUEUE: usize = 8192;

type Reply = oneshot::Sender<Result<MessageOutcome, StoreError>>;

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

/// Handle to the batch writer.
#[derive(Clone, Debug)]
pub struct Delivery {
    tx: mpsc::Sender<(NewMessage, Reply)>,
}

impl Delivery {
    /// Starts the writer task; it ends when every handle is dropped.
    pub fn start(store: Arc<dyn Store>, wakeups: Arc<Wakeups>) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        tokio::spawn(writer(store, wakeups, rx));
        Self { tx }
    }

    /// Queues a message and waits until its batch is committed.
    pub async fn send(&self, msg: NewMessage) -> Result<MessageOutcome, ApiError> {
        let (reply, answer) = oneshot::channel();
        self.tx
            .send((msg, reply))
            .await
            .map_err(|_| ApiError::internal("delivery writer stopped"))?;
        let outcome = answer
            .await
            .map_err(|_| ApiError::internal("delivery writer dropped a message"))?;
        Ok(outcome?)
    }
}

async fn writer(
    store: Arc<dyn Store>,
    wakeups: Arc<Wakeups>,
    mut rx: mpsc::Receiver<(NewMessage, Reply)>,
) {
    let mut pending = Vec::with_capacity(MAX_BATCH);
    while rx.recv_many(&mut pending, MAX_BATCH).await > 0 {
        let (msgs, replies): (Vec<NewMessage>, Vec<Reply>) = pending.drain(..).unzip();
        let s = store.clone();
        let (letters, started) = (msgs.len(), std::time::Instant::now());
        let result = tokio::task::spawn_blocking(move || s.append_messages(&msgs)).await;
        // Batch size and write time (fsync included) tell whether senders
        // wait for the disk or the disk for senders (BENCHMARKS.md).
        tracing::debug!(
            letters,
            micros = started.elapsed().as_micros() as u64,
            "batch written"
        );
        match result {
            Ok(Ok(outcomes)) => {
                let touched = outcomes
                    .iter()
                    .filter_map(|o| o.as_ref().ok())
                    .flat_map(|o| o.recipients.iter());
                wakeups.poke(touched);
                for (reply, outcome) in replies.into_iter().zip(outcomes) {
                    let _ = reply.send(outcome);
                }
            }
            Ok(Err(e)) => {
                tracing::error!(error = %e, "message batch failed; nothing stored");
                let text = e.to_string();
                for reply in replies {
                    let _ = reply.send(Err(match e {
                        StoreError::Full => StoreError::Full,
                        _ => StoreError::Sqlite(text.clone()),
                    }));
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "message batch task failed; nothing stored");
                for reply in replies {
                    let _ = reply.send(Err(StoreError::Sqlite("writer task failed".into())));
                }
            }
        }
    }
}
