use super::blocking;
use crate::auth::AuthDevice;
use crate::error::ApiError;
use crate::json::{Json, Query};
use crate::state::AppState;
use axum::extract::State;
use serde::Deserialize;
use std::time::Duration;
use valise_proto::api::{Ack, Acked, InboxEntry, InboxPage};
use valise_proto::limits::MAX_INBOX_PAGE;

const DEFAULT_LIMIT: usize = 500;
const MAX_WAIT_MS: u64 = 30_000;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InboxQuery {
    #[serde(default)]
    after: u64,
    #[serde(default)]
    limit: Option<usize>,
    #[serde(default)]
    wait_ms: u64,
    /// Also say how many entries wait in all (first page of a catch-up).
    #[serde(default)]
    count: bool,
}

/// # GET /v1/inbox?after=N&limit=M&wait_ms=W&count=B
///
/// Reads the caller's inbox after a sequence number. With `wait_ms`, an
/// empty read waits (long poll) until the writer pokes this device, so
/// online devices get messages without polling hard.
pub async fn read(
    State(state): State<AppState>,
    AuthDevice(device): AuthDevice,
    Query(q): Query<InboxQuery>,
) -> Result<Json<InboxPage>, ApiError> {
    let limit = q.limit.unwrap_or(DEFAULT_LIMIT).clamp(1, MAX_INBOX_PAGE);
    let deadline = tokio::time::Instant::now() + Duration::from_millis(q.wait_ms.min(MAX_WAIT_MS));
    let notify = state.wakeups.of(&device);
    let mut shutdown = state.shutdown.clone();
    loop {
        // Registered before reading, so a poke between read and wait is not lost.
        let notified = notify.notified();
        tokio::pin!(notified);
        notified.as_mut().enable();
        let (store, d) = (state.store.clone(), device.clone());
        let (entries, more, pending) = blocking(move || {
            let (entries, more) = store.inbox_page(&d, q.after, limit)?;
            let pending = if q.count && more {
                Some(store.inbox_count(&d, q.after)?)
            } else {
                q.count.then_some(entries.len() as u64)
            };
            Ok((entries, more, pending))
        })
        .await?;
        if !entries.is_empty() || tokio::time::Instant::now() >= deadline || *shutdown.borrow() {
            return Ok(Json(InboxPage {
                entries: entries
                    .into_iter()
                    .map(|e| InboxEntry {
                        seq: e.seq,
                        kind: e.kind,
                        conversation: e.conversation,
                        sender: e.sender,
                        message: e.message.into(),
                        ratchet_tree: e.ratchet_tree.map(Into::into),
                    })
                    .collect(),
                more,
                pending,
            }));
        }
        tokio::select! {
            _ = notified => {}
            _ = tokio::time::sleep_until(deadline) => {}
            _ = shutdown.changed() => {}
        }
    }
}

/// # POST /v1/inbox/ack
///
/// Deletes the caller's entries up to a sequence number; bodies nobody else
/// waits for are dropped with them.
pub async fn ack(
    State(state): State<AppState>,
    AuthDevice(device): AuthDevice,
    Json(req): Json<Ack>,
) -> Result<Json<Acked>, ApiError> {
    let removed = blocking(move || Ok(state.store.ack(&device, req.up_to)?)).await?;
    Ok(Json(Acked { removed }))
}
