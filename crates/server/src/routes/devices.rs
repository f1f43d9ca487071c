use super::blocking;
use crate::audit::Event;
use crate::client_addr::ClientAddr;
use crate::device_change::{check_approval, check_revocation};
use crate::error::ApiError;
use crate::json::{Json, Path};
use crate::limits::DeviceChangePermit;
use crate::state::AppState;
use axum::extract::State;
use valise_proto::api::{ApproveDevice, DirectoryRoot, RevokeDevice};
use valise_proto::audit::Action;
use valise_proto::{DeviceAddress, DeviceId};

/// # POST /v1/devices/{device}/approval
///
/// An approved device approves a pending device of the same user with its
/// signature ([`crate::device_change`] says what is checked and the error
/// codes). The approval is stored and published; the answer is the signed
/// root of the epoch that publishes it.
pub async fn approve(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    DeviceChangePermit(caller): DeviceChangePermit,
    Path(device): Path<DeviceId>,
    Json(req): Json<ApproveDevice>,
) -> Result<Json<DirectoryRoot>, ApiError> {
    let st = state.clone();
    let by = caller.clone();
    let seq = blocking(move || {
        let user = st.store.user(&caller.user)?;
        let approval = check_approval(
            &user,
            &caller.device,
            &device,
            req.number,
            req.signature.into_vec(),
            crate::now_ms(),
        )?;
        let seq = st.store.approve_device(&approval)?;
        st.standing.approve(&approval.device);
        tracing::info!(device = %approval.device, by = %caller, "device approved");
        Ok(seq)
    })
    .await;
    let target = DeviceAddress::new(by.user.clone(), device);
    let seq = audited(
        &state,
        Event::by(&by, Action::DeviceApproved)
            .on_device(&target)
            .from(client),
        seq,
    )?;
    published(&state, seq).await
}

/// # POST /v1/devices/{device}/revocation
///
/// An approved device revokes a device of the same user (itself included)
/// with its signature ([`crate::device_change`]). The revoked device's
/// tokens stop working at once (`device_revoked`); the revocation is
/// published, and the answer is the signed root of the epoch that does.
pub async fn revoke(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    DeviceChangePermit(caller): DeviceChangePermit,
    Path(device): Path<DeviceId>,
    Json(req): Json<RevokeDevice>,
) -> Result<Json<DirectoryRoot>, ApiError> {
    let st = state.clone();
    let by = caller.clone();
    let seq = blocking(move || {
        let user = st.store.user(&caller.user)?;
        let revocation = check_revocation(
            &user,
            &caller.device,
            &device,
            req.at,
            req.signature.into_vec(),
            crate::now_ms(),
        )?;
        let seq = st.store.revoke_device(&revocation)?;
        st.standing.revoke(&revocation.device);
        tracing::info!(device = %revocation.device, by = %caller, "device revoked");
        Ok(seq)
    })
    .await;
    let target = DeviceAddress::new(by.user.clone(), device);
    let seq = audited(
        &state,
        Event::by(&by, Action::DeviceRevoked)
            .on_device(&target)
            .from(client),
        seq,
    )?;
    published(&state, seq).await
}

/// Records a device change, done or refused (with its code), in the audit log.
fn audited(
    state: &AppState,
    event: Event,
    outcome: Result<u64, ApiError>,
) -> Result<u64, ApiError> {
    match &outcome {
        Ok(_) => state.evidence.emit(event.text("outcome", "done")),
        Err(e) => state
            .evidence
            .emit(event.text("outcome", "refused").refused(e)),
    }
    outcome
}

/// Waits for the epoch that publishes queue entry `seq`; its signed root.
async fn published(state: &AppState, seq: u64) -> Result<Json<DirectoryRoot>, ApiError> {
    let root = state.directory.wait_published(seq).await?;
    Ok(Json(DirectoryRoot {
        root: root.to_bytes().into(),
    }))
}
