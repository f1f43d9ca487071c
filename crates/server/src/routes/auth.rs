use super::blocking;
use crate::auth::{CHALLENGE_TTL, TOKEN_TTL, new_token};
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;
use crate::store::{DeviceRecord, Status};
use axum::extract::State;
use openmls_traits::crypto::OpenMlsCrypto as _;
use openmls_traits::types::SignatureScheme;
use valise_proto::DeviceAddress;
use valise_proto::api::{
    ChallengeRequest, ChallengeResponse, TokenRequest, TokenResponse, auth_signed_content,
};

/// The device that may log in: enrolled and not revoked. An unknown device
/// gets the same 401 as a bad signature, so that the endpoints do not list
/// devices; a revoked one learns it was revoked (`device_revoked`).
fn may_log_in(device: Option<DeviceRecord>) -> Result<DeviceRecord, ApiError> {
    match device {
        Some(d) if d.status == Status::Revoked => Err(ApiError::device_revoked()),
        Some(d) => Ok(d),
        None => Err(ApiError::unauthorized()),
    }
}

/// # POST /v1/auth/challenge
///
/// Hands out a single-use challenge for an enrolled device that is not
/// revoked (pending devices log in too: they sync and wait).
pub async fn challenge(
    State(state): State<AppState>,
    Json(req): Json<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let device = DeviceAddress::new(req.user, req.device);
    let store = state.store.clone();
    let d = device.clone();
    blocking(move || may_log_in(store.device(&d)?)).await?;
    let challenge = state.challenges.issue(device)?;
    Ok(Json(ChallengeResponse {
        challenge: challenge.to_vec().into(),
        expires_in_s: CHALLENGE_TTL.as_secs(),
    }))
}

/// # POST /v1/auth/token
///
/// Exchanges a signed challenge for a bearer token. The signature covers the
/// domain and device, so it cannot be replayed to another server or device.
pub async fn token(
    State(state): State<AppState>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let device = DeviceAddress::new(req.user, req.device);
    if !state.challenges.take(req.challenge.as_slice(), &device) {
        return Err(ApiError::unauthorized());
    }
    let st = state.clone();
    let token = blocking(move || {
        let key = may_log_in(st.store.device(&device)?)?.signature_key;
        let payload = auth_signed_content(&st.domain, &device, req.challenge.as_slice());
        st.crypto
            .verify_signature(
                SignatureScheme::ED25519,
                &payload,
                &key,
                req.signature.as_slice(),
            )
            .map_err(|_| ApiError::unauthorized())?;
        let (token, hash) = new_token()?;
        let expires = crate::now_ms()
            .saturating_add(i64::try_from(TOKEN_TTL.as_millis()).unwrap_or(i64::MAX));
        st.store.create_token(hash, &device, expires)?;
        st.sessions.insert(hash, device.clone(), expires);
        tracing::info!(device = %device, "device logged in");
        Ok(token)
    })
    .await?;
    Ok(Json(TokenResponse {
        token,
        expires_in_s: TOKEN_TTL.as_secs(),
    }))
}
