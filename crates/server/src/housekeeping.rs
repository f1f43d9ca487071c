//! Periodic cleanup of what the store no longer needs: log rows every
//! device that reads them acknowledged, expired tokens, and the ids of
//! accepted letters once they no longer have to catch a late retry, and
//! attachment blobs left unfinished, or finished but named by no letter,
//! for a day. Never touches anything a device has not acknowledged.

use crate::background::Background;
use crate::blobs::BlobFiles;
use crate::store::Store;
use std::sync::Arc;
use std::time::Duration;

/// How often the server purges (the first purge runs at start).
pub const EVERY: Duration = Duration::from_secs(3600);

/// How long a delivered message's client id is remembered, so that a
/// device retrying an unanswered send is told "duplicate". Receivers drop
/// duplicates by message id anyway; this spares them the traffic.
pub const DUPLICATE_WINDOW: Duration = Duration::from_secs(30 * 24 * 3600);

/// Starts the purge loop among the server's background tasks.
pub fn start(store: Arc<dyn Store>, background: &Background) {
    every(store, background, "housekeeping", EVERY, purge);
}

/// How often the log is collected.
pub const COLLECT_EVERY: Duration = Duration::from_secs(5);
/// Rows deleted per write, so that senders never wait long behind it.
const COLLECT_ROWS: usize = 20_000;

/// Starts the log's garbage collector among the server's background tasks.
pub fn start_collector(store: Arc<dyn Store>, background: &Background) {
    every(store, background, "log collector", COLLECT_EVERY, collect);
}

/// Starts the sweep of orphan blobs among the background tasks: every
/// hour, or four times a window shorter than four hours (a blob outlives
/// its window by at most a quarter of it).
pub fn start_blob_expiry(store: Arc<dyn Store>, blobs: Arc<BlobFiles>, background: &Background) {
    let period = (blobs.window / 4).clamp(Duration::from_secs(1), EVERY);
    every(store, background, "blob expiry", period, move |s| {
        expire_blobs(s, &blobs)
    });
}

/// Runs `work` on the store every `period` (the first time at start), off
/// the async threads, and again at once while it says there is more.
fn every(
    store: Arc<dyn Store>,
    background: &Background,
    name: &'static str,
    period: Duration,
    work: impl Fn(&dyn Store) -> bool + Send + Sync + 'static,
) {
    let work = Arc::new(work);
    let mut stop = background.signal();
    background.spawn(name, async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            loop {
                let (s, w) = (store.clone(), work.clone());
                match tokio::task::spawn_blocking(move || w(s.as_ref())).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(task = name, error = %e, "task failed");
                        break;
                    }
                }
            }
        }
    });
}

/// Forgets expired tokens and the ids of letters accepted before the
/// duplicate window.
fn purge(store: &dyn Store) -> bool {
    let now = crate::now_ms();
    let window = i64::try_from(DUPLICATE_WINDOW.as_millis()).unwrap_or(i64::MAX);
    match store.purge(now, now.saturating_sub(window)) {
        Ok(p) => tracing::info!(tokens = p.tokens, message_ids = p.message_ids, "purged"),
        Err(e) => tracing::warn!(error = %e, "purge failed"),
    }
    false
}

/// Collects a slice of the log; true if there may be more.
fn collect(store: &dyn Store) -> bool {
    match store.collect_garbage(COLLECT_ROWS) {
        Ok(n) if n as usize >= COLLECT_ROWS => true,
        Ok(n) => {
            tracing::debug!(rows = n, "log collected");
            false
        }
        Err(e) => {
            tracing::warn!(error = %e, "log collection failed");
            false
        }
    }
}

/// Forgets the blobs no letter named within their window (unfinished, or
/// finished and never linked: [`crate::store::Store::link_blobs`]), then
/// their files (a crash between the two leaves a file no record names:
/// harmless, and it holds ciphertext only).
pub fn expire_blobs(store: &dyn Store, blobs: &BlobFiles) -> bool {
    let window = i64::try_from(blobs.window.as_millis()).unwrap_or(i64::MAX);
    match store.expire_blobs(crate::now_ms().saturating_sub(window)) {
        Ok(ids) if !ids.is_empty() => {
            let failed = ids.iter().filter(|id| blobs.remove(id).is_err()).count();
            tracing::info!(expired = ids.len(), failed, "orphan blobs expired");
        }
        Ok(_) => {}
        Err(e) => tracing::warn!(error = %e, "blob expiry failed"),
    }
    false
}
