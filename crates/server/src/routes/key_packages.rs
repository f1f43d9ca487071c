use super::blocking;
use crate::auth::AuthDevice;
use crate::error::ApiError;
use crate::hub::check_key_package;
use crate::json::{Json, Path};
use crate::limits::ClaimPermit;
use crate::state::AppState;
use axum::extract::State;
use valise_proto::api::{
    ClaimRequest, ClaimResponse, ClaimedKeyPackage, DeviceInfo, DeviceList, KeyPackageStock,
    KeyPackageUpload,
};
use valise_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;
use valise_proto::{ErrorCode, UserId};

/// # PUT /v1/devices/self/key-packages
///
/// Restocks the caller's key packages, checked like at enrolment so that
/// nobody can be handed a package that does not name its device.
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
    let one_time = blocking(move || {
        let key = state
            .store
            .device_key(&device)?
            .ok_or_else(ApiError::unauthorized)?;
        for kp in &req.one_time {
            check_key_package(
                &state.crypto,
                &state.policy,
                kp.as_slice(),
                &device,
                &key,
                false,
            )?;
        }
        if let Some(lr) = &req.last_resort {
            check_key_package(
                &state.crypto,
                &state.policy,
                lr.as_slice(),
                &device,
                &key,
                true,
            )?;
        }
        let one_time: Vec<Vec<u8>> = req.one_time.into_iter().map(|b| b.into_vec()).collect();
        let lr = req.last_resort.map(|b| b.into_vec());
        Ok(state
            .store
            .add_key_packages(&device, &one_time, lr.as_deref())?)
    })
    .await?;
    Ok(Json(KeyPackageStock { one_time }))
}

/// # POST /v1/users/{user}/key-packages/claim
///
/// Takes one key package per device of a user, atomically, so two adders
/// never get the same one-time package.
pub async fn claim(
    State(state): State<AppState>,
    ClaimPermit(caller): ClaimPermit,
    Path(user): Path<UserId>,
    Json(req): Json<ClaimRequest>,
) -> Result<Json<ClaimResponse>, ApiError> {
    #[cfg(feature = "adversary")]
    if let Some(fake) = state.adversary.served_key(&user) {
        return Ok(Json(ClaimResponse {
            user,
            key_packages: vec![fake],
        }));
    }
    let u = user.clone();
    let claimed =
        blocking(move || Ok(state.store.claim_key_packages(&u, &req.exclude, &caller)?)).await?;
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
/// Lists a user's devices and keys, so that clients can check a roster's
/// leaves against what the server enrolled.
pub async fn devices(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
    Path(user): Path<UserId>,
) -> Result<Json<DeviceList>, ApiError> {
    let u = user.clone();
    let devices = blocking(move || Ok(state.store.list_devices(&u)?)).await?;
    Ok(Json(DeviceList {
        user,
        devices: devices
            .into_iter()
            .map(|d| DeviceInfo {
                device: d.device,
                signature_key: d.signature_key.into(),
                enrolled_at_ms: d.enrolled_at_ms,
            })
            .collect(),
    }))
}
