use crate::auth::AuthDevice;
use crate::directory::ProofKind as Kind;
use crate::error::ApiError;
use crate::json::{Json, Path, Query};
use crate::limits::AuditPermit;
use crate::state::AppState;
use axum::extract::State;
use serde::Deserialize;
use valise_directory::{Proven, SignedRoot};
use valise_proto::api::{DirectoryAudit, DirectoryProof, DirectoryRoot};
use valise_proto::{DeviceAddress, UserId};

/// # GET /v1/directory/root
///
/// The key directory's newest root, freshly signed with the directory key.
/// Public, like roots themselves: auditors ask without an account.
pub async fn root(
    State(state): State<AppState>,
    caller: Option<AuthDevice>,
) -> Result<Json<DirectoryRoot>, ApiError> {
    let root = match caller {
        Some(AuthDevice(caller)) => current_root(&state, &caller).await?,
        None => state.directory.root().await?,
    };
    Ok(Json(DirectoryRoot {
        root: root.to_bytes().into(),
    }))
}

/// # GET /v1/directory/lookup/{user}
///
/// Proof of the user's current device list, against the signed root it was
/// made with. 404 `not_found` for a user never published.
pub async fn lookup(
    State(state): State<AppState>,
    AuthDevice(caller): AuthDevice,
    Path(user): Path<UserId>,
) -> Result<Json<DirectoryProof>, ApiError> {
    Ok(Json(proof(
        prove(&state, &caller, user, Kind::Lookup).await?,
    )))
}

/// # GET /v1/directory/history/{user}
///
/// Proof of every device list ever published for the user (so that a
/// device added and removed again is still seen). 404 `not_found` for a
/// user never published.
pub async fn history(
    State(state): State<AppState>,
    AuthDevice(caller): AuthDevice,
    Path(user): Path<UserId>,
) -> Result<Json<DirectoryProof>, ApiError> {
    Ok(Json(proof(
        prove(&state, &caller, user, Kind::History).await?,
    )))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditQuery {
    from: u64,
    to: u64,
}

/// # GET /v1/directory/audit?from=E&to=F
///
/// Public, for auditors (no token; devices send theirs): the signed roots
/// of epochs `E` and `F` and the proof that `F` only appended to `E`.
/// `E < F`, at most [`valise_proto::limits::MAX_AUDIT_SPAN`] epochs apart (400
/// `bad_request` otherwise); 404 `not_found` for an epoch not published yet.
/// Rate-limited per device, or per client address without a token (429
/// `rate_limited`), before the query is read.
pub async fn audit(
    State(state): State<AppState>,
    AuditPermit(caller): AuditPermit,
    Query(q): Query<AuditQuery>,
) -> Result<Json<DirectoryAudit>, ApiError> {
    let (from, to, proof) = prove_audit(&state, caller, q).await?;
    Ok(Json(DirectoryAudit {
        from: from.to_bytes().into(),
        to: to.to_bytes().into(),
        proof: proof.into(),
    }))
}

fn proof(p: Proven) -> DirectoryProof {
    DirectoryProof {
        root: p.root.to_bytes().into(),
        proof: p.proof.into(),
    }
}

/// The audit `caller` is shown (a test build's adversary may show another).
async fn prove_audit(
    state: &AppState,
    caller: Option<AuthDevice>,
    q: AuditQuery,
) -> Result<(SignedRoot, SignedRoot, Vec<u8>), ApiError> {
    #[cfg(feature = "adversary")]
    if let Some(AuthDevice(caller)) = &caller
        && let Some(a) = crate::adversary::audit_for(state, caller, q.from, q.to).await
    {
        return a;
    }
    #[cfg(not(feature = "adversary"))]
    let _ = caller;
    Ok(state.directory.audit(q.from, q.to).await?)
}

/// The root `caller` is shown (a test build's adversary may show another).
async fn current_root(state: &AppState, caller: &DeviceAddress) -> Result<SignedRoot, ApiError> {
    #[cfg(feature = "adversary")]
    if let Some(r) = crate::adversary::root_for(state, caller).await {
        return r;
    }
    #[cfg(not(feature = "adversary"))]
    let _ = caller;
    Ok(state.directory.root().await?)
}

/// The proof `caller` is shown (a test build's adversary may show another).
async fn prove(
    state: &AppState,
    caller: &DeviceAddress,
    user: UserId,
    kind: Kind,
) -> Result<Proven, ApiError> {
    #[cfg(feature = "adversary")]
    if let Some(p) = crate::adversary::proof_for(state, caller, &user, kind).await {
        return p;
    }
    #[cfg(not(feature = "adversary"))]
    let _ = caller;
    Ok(match kind {
        Kind::Lookup => state.directory.lookup(user).await?,
        Kind::History => state.directory.history(user).await?,
    })
}
