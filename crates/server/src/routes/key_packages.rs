use super::blocking;
use crate::audit::Event;
use crate::auth::AuthDevice;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::{Json, Path};
use crate::limits::{ClaimPermit, admit_key_packages};
use crate::state::AppState;
use crate::store::NewKeyPackage;
use axum::extract::State;
use valise_mls::{Refusal, key_package};
use valise_proto::api::{
    ClaimRequest, ClaimResponse, ClaimedKeyPackage, DeviceInfo, DeviceList, KeyPackageStock,
    KeyPackageUpload,
};
use valise_proto::audit::Action;
use valise_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;
use valise_proto::{DeviceAddress, ErrorCode, UserId};

/// How long a claimed key package must stay valid at least: the claimer
/// checks it with its own clock and uses it within moments.
const CLAIM_MARGIN_S: u64 = 300;

/// # PUT /v1/devices/self/key-packages
///
/// Restocks the caller's key packages (pending devices too: they are
/// claimed once approved), checked like at enrolment so that nobody can be
/// handed a package that does not name its device. With `replace`, the
/// caller's unclaimed one-time packages are dropped first (a device
/// rotating them before they expire). The packages count against the
/// device's allowance before any is verified (429 `rate_limited`); an
/// upload of none just reads the stock.
pub async fn upload(
    State(state): State<AppState>,
    AuthDevice(device): AuthDevice,
    Json(req): Json<KeyPackageUpload>,
) -> Result<Json<KeyPackageStock>, ApiError> {
    if req.one_time.len() > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("at most {MAX_KEY_PACKAGES_PER_UPLOAD} key packages per upload"),
        ));
    }
    let uploaded = req.one_time.len() + usize::from(req.last_resort.is_some());
    admit_key_packages(&state, &device, uploaded)?;
    let one_time = blocking(move || {
        let key = state
            .store
            .device(&device)?
            .ok_or_else(ApiError::unauthorized)?
            .signature_key;
        let checked = |bytes: Vec<u8>, last_resort| {
            let not_after = check_upload(&state, &bytes, &device, &key, last_resort)?;
            Ok::<_, ApiError>(NewKeyPackage { bytes, not_after })
        };
        let one_time: Vec<NewKeyPackage> = req
            .one_time
            .into_iter()
            .map(|kp| checked(kp.into_vec(), false))
            .collect::<Result<_, _>>()?;
        let last_resort = req
            .last_resort
            .map(|lr| checked(lr.into_vec(), true))
            .transpose()?;
        Ok(state
            .store
            .add_key_packages(&device, &one_time, last_resort.as_ref(), req.replace)?)
    })
    .await?;
    Ok(Json(KeyPackageStock { one_time }))
}

/// Checks a key package `device` uploads (signed by `key`), with this
/// server's policy and clock, so that nobody is ever handed one that does
/// not name its device; returns when it expires (claims skip it then).
pub(super) fn check_upload(
    state: &AppState,
    bytes: &[u8],
    device: &DeviceAddress,
    key: &[u8],
    last_resort: bool,
) -> Result<u64, Refusal> {
    Ok(key_package::check(
        state.crypto.as_ref(),
        &state.policy,
        bytes,
        device,
        Some(key),
        last_resort,
        crate::now_s(),
    )?
    .not_after)
}

/// # POST /v1/users/{user}/key-packages/claim
///
/// Takes one key package per approved device of a user, atomically, so two
/// adders never get the same one-time package. Pending and revoked devices
/// are skipped (nobody may add them), and so is any package that expires
/// within [`CLAIM_MARGIN_S`].
pub async fn claim(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    ClaimPermit(caller): ClaimPermit,
    Path(user): Path<UserId>,
    Json(req): Json<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    let by = caller.clone();
    #[cfg(feature = "adversary")]
    if let Some(fake) = state.adversary.served_key(&user) {
        return Ok(Json(ClaimResponse {
            user,
            key_packages: vec![fake],
        }));
    }
    let u = user.clone();
    let valid_at = crate::now_s().saturating_add(CLAIM_MARGIN_S);
    let store = state.store.clone();
    let claimed =
        blocking(move || Ok(store.claim_key_packages(&u, &req.exclude, &caller, valid_at)?))
            .await?;
    state.evidence.emit(
        Event::by(&by, Action::KeyPackagesClaimed)
            .on_user(&user)
            .from(client)
            .count("count", claimed.len() as u64)
            .count(
                "last_resort",
                claimed.iter().filter(|c| c.last_resort).count() as u64,
            ),
    );
    if claimed.is_empty() {
        return Err(ApiError::new(
            ErrorCode::NoKeyPackage,
            format!("no device of {user} has a key package to claim"),
        ));
    }
    Ok(Json(ClaimResponse {
        user,
        key_packages: claimed
            .into_iter()
            .map(|c| ClaimedKeyPackage {
                device: c.device,
                key_package: c.bytes.into(),
                last_resort: c.last_resort,
            })
            .collect(),
    }))
}

/// # GET /v1/users/{user}/devices
///
/// Lists a user's devices, keys and statuses as the server has them, so
/// that clients can check a roster's leaves against what the server
/// enrolled (they trust only the directory's signatures for the status).
pub async fn devices(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
    Path(user): Path<UserId>,
) -> Result<Json<DeviceList>, ApiError> {
    let u = user.clone();
    let record = blocking(move || Ok(state.store.user(&u)?)).await?;
    Ok(Json(DeviceList {
        user,
        devices: record
            .devices
            .into_iter()
            .map(|d| DeviceInfo {
                device: d.device,
                signature_key: d.signature_key.into(),
                enrolled_at_ms: d.enrolled_at_ms,
                status: d.status.as_str().into(),
            })
            .collect(),
    }))
}
