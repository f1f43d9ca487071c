//! Periodic cleanup of what the store no longer needs: log rows every
//! device that reads them acknowledged, expired tokens, and the ids of
//! accepted letters once they no longer have to catch a late retry.
//! Never touches anything a device has not acknowledged.

use crate::background::Background;
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
    let mut stop = background.signal();
    background.spawn("housekeeping", async move {
        let mut tick = tokio::time::interval(EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            let s = store.clone();
            let now = crate::now_ms();
            let window = i64::try_from(DUPLICATE_WINDOW.as_millis()).unwrap_or(i64::MAX);
            let keep_since = now.saturating_sub(window);
            match tokio::task::spawn_blocking(move || s.purge(now, keep_since)).await {
                Ok(Ok(p)) => {
                    tracing::info!(tokens = p.tokens, message_ids = p.message_ids, "purged")
                }
                Ok(Err(e)) => tracing::warn!(error = %e, "purge failed"),
                Err(e) => tracing::warn!(error = %e, "purge task failed"),
            }
        }
    });
}

/// How often the log is collected.
pub const COLLECT_EVERY: Duration = Duration::from_secs(5);
/// Rows deleted per write, so that senders never wait long behind it.
const COLLECT_ROWS: usize = 20_000;

/// Starts the log's garbage collector among the server's background tasks.
pub fn start_collector(store: Arc<dyn Store>, background: &Background) {
    let mut stop = background.signal();
    background.spawn("log collector", async move {
        let mut tick = tokio::time::interval(COLLECT_EVERY);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            loop {
                let s = store.clone();
                match tokio::task::spawn_blocking(move || s.collect_garbage(COLLECT_ROWS)).await {
                    Ok(Ok(n)) if n as usize >= COLLECT_ROWS => continue,
                    Ok(Ok(n)) => tracing::debug!(rows = n, "log collected"),
                    Ok(Err(e)) => tracing::warn!(error = %e, "log collection failed"),
                    Err(e) => tracing::warn!(error = %e, "log collection task failed"),
                }
                break;
            }
        }
    });
}
