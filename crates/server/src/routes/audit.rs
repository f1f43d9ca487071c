//! The audit log's public routes (issue 10): what any auditor needs to
//! check the log from outside, with no account. Each is rate-limited per
//! device, or per client address without a token, like the directory
//! audit ([`AuditPermit`]); proofs read O(log n) stored subtree hashes.

use super::blocking;
use crate::audit::Event;
use crate::auth::AuthDevice;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::{Json, Query};
use crate::limits::AuditPermit;
use crate::state::AppState;
use crate::store::Store;
use axum::extract::State;
use axum::http::header;
use axum::response::IntoResponse;
use serde::Deserialize;
use valise_proto::ErrorCode;
use valise_proto::api::{
    AccountAudit, AuditKeyInfo, AuditLeaves, AuditProof, AuditReport, AuditReportReceipt,
    MAX_REPORTED_CHECKPOINTS, ProvenEntry,
};
use valise_proto::audit::{Action, Actor};
use valise_proto::bytes::Bytes;
use valise_proto::limits::MAX_AUDIT_LEAVES_PAGE;
use valise_proto::tlog::{self, Range, SignedCheckpoint};

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
        hashes(store.as_ref(), plan)
    })
    .await?;
    Ok(Json(AuditProof { proof }))
}

/// The hashes of a proof's ranges (each O(log n) stored subtrees).
fn hashes(store: &dyn Store, plan: Vec<Range>) -> Result<Vec<Bytes>, ApiError> {
    plan.into_iter()
        .map(|(a, b)| {
            let hashes = store.audit_nodes(&tlog::range_subtrees(a, b))?;
            tlog::fold_subtrees(&hashes)
                .map(|h| h.to_vec().into())
                .ok_or_else(|| ApiError::internal("an empty proof range"))
        })
        .collect()
}

/// Most entries in one [`account`] answer.
const ACCOUNT_PAGE: usize = 100;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountQuery {
    from: u64,
    since: u64,
}

/// # GET /v1/audit/account?from=I&since=S
///
/// For a device (token required): the entries from number `I` that its
/// account must be shown (`valise_proto::audit::Entry::shown_to`: the
/// administrator's invites, revocations and resets on it), up to the newest
/// checkpoint, each with its inclusion proof there, and the consistency
/// proof from size `S` (the checkpoint the device saw last; 0 for none) to
/// it (none if `S` is past it: the device saw a longer log, which the
/// checkpoint shows it). 404 `not_found` before the first checkpoint.
pub async fn account(
    State(state): State<AppState>,
    AuthDevice(caller): AuthDevice,
    Query(q): Query<AccountQuery>,
) -> Result<Json<AccountAudit>, ApiError> {
    let store = state.store.clone();
    #[cfg(feature = "adversary")]
    let endless = state.adversary.endless_audit();
    let answer = blocking(move || {
        let checkpoint = store
            .latest_audit_checkpoint()?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no audit checkpoint signed yet"))?;
        let size = SignedCheckpoint::parse(&checkpoint)
            .map_err(|e| ApiError::internal(format!("stored audit checkpoint: {e}")))?
            .claimed()
            .size();
        // A device that saw a longer log gets no proof: the checkpoint
        // alone shows it the log shrank.
        let plan = tlog::consistency_plan(q.since, size).unwrap_or_default();
        let consistency = hashes(store.as_ref(), plan)?;
        let wanted = store.audit_account(&caller.user, q.from, size, ACCOUNT_PAGE + 1)?;
        let more = wanted.len() > ACCOUNT_PAGE;
        let mut entries = Vec::with_capacity(wanted.len());
        for index in wanted.into_iter().take(ACCOUNT_PAGE) {
            let entry = store
                .audit_entries(index, 1)?
                .into_iter()
                .find(|(i, _)| *i == index)
                .ok_or_else(|| ApiError::internal(format!("audit entry {index} is missing")))?
                .1;
            let plan =
                tlog::inclusion_plan(index, size).map_err(|e| ApiError::internal(e.to_string()))?;
            entries.push(ProvenEntry {
                index,
                entry: entry.into(),
                proof: hashes(store.as_ref(), plan)?,
            });
        }
        Ok(AccountAudit {
            checkpoint,
            consistency,
            entries,
            more,
        })
    })
    .await?;
    #[cfg(feature = "adversary")]
    let answer = if endless {
        AccountAudit {
            entries: Vec::new(),
            more: true,
            ..answer
        }
    } else {
        answer
    };
    Ok(Json(answer))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LeavesQuery {
    start: u64,
    count: Option<usize>,
}

/// # GET /v1/audit/leaves?start=S&count=C
///
/// The leaf hashes of up to `C` (at most [`MAX_AUDIT_LEAVES_PAGE`], the
/// default) entries from number `S`; fewer (or none) at the end of the log.
/// Hashed here from the entries as stored, so that an entry edited in the
/// database shows as a leaf that no longer makes the signed root. The
/// entries themselves are not served: who did what, when and from where
/// is for the organisation (`valised audit verify`) and, for its own
/// account, each device (`/v1/audit/account`).
pub async fn leaves(
    State(state): State<AppState>,
    AuditPermit(_): AuditPermit,
    Query(q): Query<LeavesQuery>,
) -> Result<Json<AuditLeaves>, ApiError> {
    let count = q
        .count
        .unwrap_or(MAX_AUDIT_LEAVES_PAGE)
        .clamp(1, MAX_AUDIT_LEAVES_PAGE);
    let store = state.store.clone();
    let rows = blocking(move || Ok(store.audit_entries(q.start, count)?)).await?;
    let mut entries = Vec::with_capacity(rows.len());
    for (expected, (at, bytes)) in (q.start..).zip(rows) {
        // A gap ends the page: the auditor then finds the log shorter
        // than its checkpoint.
        if at != expected {
            break;
        }
        entries.push(tlog::leaf_hash(&bytes).to_vec().into());
    }
    Ok(Json(AuditLeaves {
        start: q.start,
        leaves: entries,
    }))
}

/// Longest checkpoint note a report may carry (a note is about 250 bytes;
/// one per witness signature more).
const MAX_REPORTED_NOTE: usize = 4096;

/// What a report's evidence shows, and why ([`judge`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Verdict {
    /// A checkpoint signed with this log's key that the log does not
    /// contain: `rolled_back` (it signs more entries than the log holds)
    /// or `forked` (another root at its size).
    Verified(&'static str),
    /// Nothing signed by this log's key (`bad_signature`), or checkpoints
    /// the log does contain (`consistent`).
    Unverified(&'static str),
}

/// Checks a report's checkpoints against the audit key and the log as
/// stored now. Only the server's own key makes a checkpoint count, so
/// nobody can fabricate a verified report; and a checkpoint it signed
/// that its log no longer matches is proof of a fork or a rollback,
/// whoever brings it.
fn judge(store: &dyn Store, key: &tlog::AuditKey, notes: &[String]) -> Result<Verdict, ApiError> {
    let signed: Vec<_> = notes
        .iter()
        .filter_map(|n| SignedCheckpoint::parse(n).and_then(|c| c.verify(key)).ok())
        .collect();
    if signed.is_empty() {
        return Ok(Verdict::Unverified("bad_signature"));
    }
    let size = store.audit_size()?;
    for c in &signed {
        if c.size() > size {
            return Ok(Verdict::Verified("rolled_back"));
        }
        let hashes = store.audit_nodes(&tlog::range_subtrees(0, c.size()))?;
        let tree = tlog::Frontier::from_parts(c.size(), hashes)
            .map_err(|e| ApiError::internal(format!("stored audit tree: {e}")))?;
        if &tree.root() != c.root() {
            return Ok(Verdict::Verified("forked"));
        }
    }
    Ok(Verdict::Unverified("consistent"))
}

/// The auditor's error code as recorded: its own snake_case word, or
/// `other` (the report is unauthenticated; the log takes no free text).
fn recorded_code(code: &str) -> &str {
    let word = !code.is_empty()
        && code.len() <= 64
        && code.bytes().all(|b| b.is_ascii_lowercase() || b == b'_');
    if word { code } else { "other" }
}

/// # POST /v1/audit/reports
///
/// An auditor (`valise audit-log`) reports checkpoints that failed its
/// verification: the one it saw before and the one that does not extend
/// it. Unauthenticated (auditors have no account) and rate-limited like
/// the other audit routes. Every report is on record (`audit_reported`);
/// one whose evidence verifies ([`judge`]) raises a critical
/// `audit_checkpoint_conflict` alert, any other at most a warning, one per
/// window for all reporters together ([`crate::rules`]). 400
/// `bad_request` for no checkpoint, too many or too long.
pub async fn report(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    AuditPermit(_): AuditPermit,
    Json(req): Json<AuditReport>,
) -> Result<Json<AuditReportReceipt>, ApiError> {
    if req.checkpoints.is_empty()
        || req.checkpoints.len() > MAX_REPORTED_CHECKPOINTS
        || req.checkpoints.iter().any(|n| n.len() > MAX_REPORTED_NOTE)
    {
        return Err(ApiError::bad_request(format!(
            "a report carries 1 to {MAX_REPORTED_CHECKPOINTS} checkpoints of at most {MAX_REPORTED_NOTE} bytes"
        )));
    }
    let store = state.store.clone();
    let key = state.audit_key.clone();
    let notes = req.checkpoints;
    let verdict = blocking(move || judge(store.as_ref(), &key, &notes)).await?;
    let (verified, reason) = match verdict {
        Verdict::Verified(r) => (true, r),
        Verdict::Unverified(r) => (false, r),
    };
    state.evidence.emit(
        Event::new(Actor::Anonymous, Action::AuditReported)
            .from(client)
            .text("verdict", if verified { "verified" } else { "unverified" })
            .text("reason", reason)
            .text("code", recorded_code(&req.code)),
    );
    Ok(Json(AuditReportReceipt { verified }))
}
