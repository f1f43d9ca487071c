//! The audit log's public routes (issue 10): what any auditor needs to
//! check the log from outside, with no account. Each is rate-limited per
//! device, or per client address without a token, like the directory
//! audit ([`AuditPermit`]); proofs read O(log n) stored subtree hashes.

use super::blocking;
use crate::error::ApiError;
use crate::json::{Json, Query};
use crate::limits::AuditPermit;
use crate::state::AppState;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use valise_proto::ErrorCode;
use valise_proto::api::{AuditEntries, AuditKeyInfo, AuditProof};
use valise_proto::limits::MAX_AUDIT_ENTRIES_PAGE;
use valise_proto::tlog::{self, Range};

/// # GET /v1/audit/key
///
/// The log's origin and the public key that signs its checkpoints (hex).
/// Auditors should get it another way too (`valised init` prints it):
/// trusted on first use, it is pinned from then on.
pub async fn key(State(state): State<AppState>, AuditPermit(_): AuditPermit) -> Json<AuditKeyInfo> {
    let key = state.audit_key.as_ref();
    Json(AuditKeyInfo {
        origin: key.name().to_owned(),
        key: key.hex(),
    })
}

/// # GET /v1/audit/checkpoint
///
/// The newest signed checkpoint, as a C2SP signed note (`text/plain`).
/// 404 `not_found` before the first one is signed.
pub async fn checkpoint(
    State(state): State<AppState>,
    AuditPermit(_): AuditPermit,
) -> Result<impl IntoResponse, ApiError> {
    let store = state.store.clone();
    let note = blocking(move || Ok(store.latest_audit_checkpoint()?))
        .await?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no audit checkpoint signed yet"))?;
    Ok(([(header::CONTENT_TYPE, "text/plain; charset=utf-8")], note))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConsistencyQuery {
    old: u64,
    new: u64,
}

/// # GET /v1/audit/consistency?old=N&new=M
///
/// The RFC 9162 consistency proof from the tree of `N` entries to that of
/// `M`. 400 `bad_request` if `N > M`; 404 `not_found` if the log has fewer
/// than `M` entries.
pub async fn consistency(
    State(state): State<AppState>,
    AuditPermit(_): AuditPermit,
    Query(q): Query<ConsistencyQuery>,
) -> Result<Json<AuditProof>, ApiError> {
    let plan =
        tlog::consistency_plan(q.old, q.new).map_err(|e| ApiError::bad_request(e.to_string()))?;
    prove(&state, q.new, plan).await
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InclusionQuery {
    index: u64,
    size: u64,
}

/// # GET /v1/audit/inclusion?index=I&size=N
///
/// The RFC 9162 inclusion proof of entry `I` in the tree of `N` entries.
/// 400 `bad_request` unless `I < N`; 404 `not_found` if the log has fewer
/// than `N` entries.
pub async fn inclusion(
    State(state): State<AppState>,
    AuditPermit(_): AuditPermit,
    Query(q): Query<InclusionQuery>,
) -> Result<Json<AuditProof>, ApiError> {
    let plan =
        tlog::inclusion_plan(q.index, q.size).map_err(|e| ApiError::bad_request(e.to_string()))?;
    prove(&state, q.size, plan).await
}

/// The hashes of `plan`'s ranges in a tree of `size`, from stored subtrees.
async fn prove(
    state: &AppState,
    size: u64,
    plan: Vec<Range>,
) -> Result<Json<AuditProof>, ApiError> {
    let store = state.store.clone();
    let proof = blocking(move || {
        let have = store.audit_size()?;
        if size > have {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                format!("the audit log has {have} entries, not {size}"),
            ));
        }
        plan.into_iter()
            .map(|(a, b)| {
                let hashes = store.audit_nodes(&tlog::range_subtrees(a, b))?;
                tlog::fold_subtrees(&hashes)
                    .map(|h| h.to_vec().into())
                    .ok_or_else(|| ApiError::internal("an empty proof range"))
            })
            .collect::<Result<Vec<_>, _>>()
    })
    .await?;
    Ok(Json(AuditProof { proof }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EntriesQuery {
    start: u64,
    count: Option<usize>,
}

/// # GET /v1/audit/entries?start=S&count=C
///
/// Up to `C` (at most [`MAX_AUDIT_ENTRIES_PAGE`], the default) entries from
/// number `S`, each the exact bytes hashed into the tree; fewer (or none)
/// at the end of the log.
pub async fn entries(
    State(state): State<AppState>,
    AuditPermit(_): AuditPermit,
    Query(q): Query<EntriesQuery>,
) -> Result<Json<AuditEntries>, ApiError> {
    let count = q
        .count
        .unwrap_or(MAX_AUDIT_ENTRIES_PAGE)
        .clamp(1, MAX_AUDIT_ENTRIES_PAGE);
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.audit_entries(q.start, count)?)).await?;
    let mut entries = Vec::with_capacity(rows.len());
    for (expected, (at, bytes)) in (q.start..).zip(rows) {
        // A gap ends the page: the auditor then finds the log shorter
        // than its checkpoint.
        if at != expected {
            break;
        }
        entries.push(bytes.into());
    }
    Ok(Json(AuditEntries {
        start: q.start,
        entries,
    }))
}
