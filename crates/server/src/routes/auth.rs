use super::blocking;
use crate::audit::Event;
use crate::auth::{CHALLENGE_TTL, TOKEN_TTL, new_token};
use crate::client_addr::ClientAddr;
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
use valise_proto::audit::{Action, Actor};

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

/// A failed login, for the audit log: by whoever is at `client`, against
/// `device` (which may not exist).
fn failed(
    state: &AppState,
    device: &DeviceAddress,
    client: Option<ClientAddr>,
    stage: &str,
    e: &ApiError,
) {
    state.evidence.emit(
        Event::new(Actor::Anonymous, Action::AuthFailed)
            .on_device(device)
            .from(client)
            .text("stage", stage)
            .refused(e),
    );
}

/// # POST /v1/auth/challenge
///
/// Hands out a single-use challenge for an enrolled device that is not
/// revoked (pending devices log in too: they sync and wait).
pub async fn challenge(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    Json(req): Json<ChallengeRequest>,
) -> Result<Json<ChallengeResponse>, ApiError> {
    let device = DeviceAddress::new(req.user, req.device);
    let store = state.store.clone();
    let d = device.clone();
    if let Err(e) = blocking(move || may_log_in(store.device(&d)?)).await {
        failed(&state, &device, client, "challenge", &e);
        return Err(e);
    }
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
    client: Option<ClientAddr>,
    Json(req): Json<TokenRequest>,
) -> Result<Json<TokenResponse>, ApiError> {
    let device = DeviceAddress::new(req.user, req.device);
    if !state.challenges.take(req.challenge.as_slice(), &device) {
        let e = ApiError::unauthorized();
        failed(&state, &device, client, "token", &e);
        return Err(e);
    }
    let st = state.clone();
    let d = device.clone();
    let token = blocking(move || {
        let device = d;
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
    .await
    .inspect_err(|e| failed(&state, &device, client, "token", e))?;
    state
        .evidence
        .emit(Event::by(&device, Action::AuthSucceeded).from(client));
    Ok(Json(TokenResponse {
        token,
        expires_in_s: TOKEN_TTL.as_secs(),
    }))
}
