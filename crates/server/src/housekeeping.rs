//! Periodic cleanup of what the store no longer needs: expired tokens, and
//! delivered messages once their id no longer has to catch a late retry.
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
                Ok(Ok(p)) => tracing::info!(tokens = p.tokens, messages = p.messages, "purged"),
                Ok(Err(e)) => tracing::warn!(error = %e, "purge failed"),
                Err(e) => tracing::warn!(error = %e, "purge task failed"),
            }
        }
    });
}
