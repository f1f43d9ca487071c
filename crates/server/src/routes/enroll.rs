use super::blocking;
use crate::error::ApiError;
use crate::hub::check_key_package;
use crate::json::Json;
use crate::state::AppState;
use crate::store::Enrollment;
use axum::extract::State;
use valise_proto::DeviceAddress;
use valise_proto::api::{EnrollRequest, EnrollResponse};
use valise_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;

/// # POST /v1/enroll
///
/// Enrols a device with a one-time invite. Key packages are checked before
/// the invite is spent, so a client bug does not burn the code; the invite
/// is consumed in the same transaction that creates the device and queues
/// the user for the key directory. The answer waits for the directory epoch
/// that publishes the user's new device list, and carries its signed root
/// and the directory key for the device to pin.
pub async fn enroll(
    State(state): State<AppState>,
    Json(req): Json<EnrollRequest>,
) -> Result<Json<EnrollResponse>, ApiError> {
    let n = req.key_packages.len();
    if n == 0 || n > MAX_KEY_PACKAGES_PER_UPLOAD {
        return Err(ApiError::bad_request(format!(
            "between 1 and {MAX_KEY_PACKAGES_PER_UPLOAD} one-time key packages are required"
        )));
    }
    let device = DeviceAddress::new(req.user.clone(), req.device);
    let st = state.clone();
    let seq = blocking(move || {
        let key = req.signature_key.as_slice();
        for kp in &req.key_packages {
            check_key_package(&st.crypto, &st.policy, kp.as_slice(), &device, key, false)?;
        }
        check_key_package(
            &st.crypto,
            &st.policy,
            req.last_resort.as_slice(),
            &device,
            key,
            true,
        )?;
        let seq = st.store.enroll(&Enrollment {
            code_hash: crate::invite::hash(&req.code),
            device: device.clone(),
            signature_key: req.signature_key.into_vec(),
            key_packages: req.key_packages.into_iter().map(|b| b.into_vec()).collect(),
            last_resort: req.last_resort.into_vec(),
            now_ms: crate::now_ms(),
        })?;
        tracing::info!(device = %device, "device enrolled");
        Ok(seq)
    })
    .await?;
    let root = state.directory.wait_published(seq).await?;
    Ok(Json(EnrollResponse {
        user: req.user,
        device: req.device,
        domain: state.domain.to_string(),
        directory_key: state.directory.directory_key().0.to_vec().into(),
        root: root.to_bytes().into(),
    }))
}
