//! # GET /v1/inbox?after=HEX&limit=M&wait_ms=W&count=B
//!
//! Reads the caller's inbox after an opaque cursor (hex; absent: from what
//! the device acknowledged last), as a binary page of
//! [`valise_proto::wire`] with the cursor to send next. Sending a cursor
//! acknowledges everything before it: there is no separate ack call.
//!
//! With `wait_ms`, an empty read waits (long poll) until the writer wakes
//! this device, then lingers a moment so that a burst lands in one page.
//! A cursor this server never handed out (it was restored from an older
//! copy of its data) is `409 unknown_cursor`.

use super::blocking;
use crate::auth::AuthDevice;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::{Binary, Query};
use crate::state::AppState;
use crate::store::{LogWrite, Position};
use axum::extract::State;
use serde::Deserialize;
use std::time::Duration;
use valise_proto::limits::{MAX_INBOX_PAGE, MAX_INBOX_PAGE_BYTES};
use valise_proto::wire::{self, InboxPage, MAX_CURSOR_BYTES};

const DEFAULT_LIMIT: usize = 500;
const MAX_WAIT_MS: u64 = 30_000;
/// How long a woken poll waits for more of a burst (bounded: latency).
/// 10 ms (the most issue 9 allows) measured no cheaper per letter than 5
/// in one sitting (docs/BENCHMARKS.md), so the shorter wait stays.
const LINGER: Duration = Duration::from_millis(5);

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(default)]
    after: Option<String>,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    wait_ms: u64,
    /// Also say how many entries wait in all (first page of a catch-up).
    #[serde(default)]
    count: bool,
}

fn cursor(after: Option<&str>) -> Result<Option<Position>, ApiError> {
    let Some(hex) = after else { return Ok(None) };
    hex::decode(hex)
        .ok()
        .filter(|b| b.len() <= MAX_CURSOR_BYTES)
        .and_then(|b| Position::from_bytes(&b))
        .map(Some)
        .ok_or_else(|| ApiError::bad_request("malformed inbox cursor"))
}

pub async fn read(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    AuthDevice(device): AuthDevice,
    Query(q): Query<InboxQuery>,
) -> Result<Binary, ApiError> {
    let after = cursor(q.after.as_deref())?;
    // Where the next read starts: moves past rows this device skips (its
    // own letters) even when a read returned nothing.
    let mut at = after;
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_INBOX_PAGE);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
    let notify = state.wakeups.of(&device);
    let mut shutdown = state.shutdown.clone();
    let mut acked = false;
    loop {
        // Registered before reading, so a wake-up between read and wait is not lost.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (store, d) = (state.store.clone(), device.clone());
        let (read, pending) = blocking(move || {
            let read = store.inbox(&d, at, limit, MAX_INBOX_PAGE_BYTES)?;
            let pending = match (q.count, read.more) {
                (false, _) => None,
                (true, true) => Some(store.inbox_count(&d, at)?),
                (true, false) => Some(read.entries.len() as u64),
            };
            Ok((read, pending))
        })
        .await?;
        // The cursor is one this log handed out (the read checked it): what
        // lies before it is processed.
        if let (Some(at), false) = (after, acked) {
            state.delivery.ack(LogWrite::Ack {
                device: device.clone(),
                at,
            });
            acked = true;
        }
        if !read.entries.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow()
        {
            state.metrics.delivered(read.entries.len());
            // Summed per device per checkpoint interval by the audit writer.
            state
                .evidence
                .inbox_read(&device, read.entries.len() as u64, client);
            let page = InboxPage {
                entries: read.entries,
                more: read.more,
                pending,
                cursor: read.next.to_bytes(),
            };
            return Ok(Binary(wire::encode_page(page)));
        }
        if read.more || Some(read.next) != at {
            at = Some(read.next);
            if read.more {
                continue;
            }
        }
        tokio::select! {
            _ = notified => {
                let linger = LINGER.min(deadline.saturating_duration_since(tokio::time::Instant::now()));
                tokio::time::sleep(linger).await;
            }
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}
