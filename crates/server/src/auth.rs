//! Device authentication: a challenge signed with the device's MLS signature
//! key buys a short-lived bearer token. Only hashes of tokens are stored, so
//! a copy of the database logs nobody in. A revoked device is refused
//! (`device_revoked`) whatever token it holds; only an approved device may
//! write ([`ApprovedDevice`]).

use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::TryRngCore as _;
use rand::rngs::OsRng;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use valise_proto::{DeviceAddress, ErrorCode};

/// How long a challenge may be answered.
pub const CHALLENGE_TTL: Duration = Duration::from_secs(60);
/// Most sessions cached in memory; past it the cache starts over.
const MAX_SESSIONS: usize = 100_000;

/// Live tokens by hash, so that an authenticated request does not touch
/// the database. Filled at login and on a database hit (after a restart).
/// A revoked device's sessions stay until they expire: its tokens are gone
/// from the database, and the cached ones are what lets the server answer
/// `device_revoked` (from [`crate::standing`]) rather than a bare 401.
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], (DeviceAddress, i64)>>,
}

impl Sessions {
    pub fn insert(&self, hash: [u8; 32], device: DeviceAddress, expires_at_ms: i64) {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= MAX_SESSIONS {
            live.clear();
        }
        live.insert(hash, (device, expires_at_ms));
    }

    fn get(&self, hash: &[u8; 32], now_ms: i64) -> Option<DeviceAddress> {
        let live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.get(hash)
            .filter(|(_, exp)| *exp > now_ms)
            .map(|(d, _)| d.clone())
    }
}

/// How long a token is valid.
pub const TOKEN_TTL: Duration = Duration::from_secs(3600);
/// Most challenges held at once: bounds memory under a flood.
const MAX_CHALLENGES: usize = 100_000;

/// Outstanding challenges, in memory only: a restart just makes clients ask again.
#[derive(Debug, Default)]
pub struct Challenges {
    live: Mutex<HashMap<[u8; 32], (DeviceAddress, Instant)>>,
}

impl Challenges {
    /// Issues a fresh challenge for `device`.
    pub fn issue(&self, device: DeviceAddress) -> Result<[u8; 32], ApiError> {
        let challenge = random32()?;
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        if live.len() >= MAX_CHALLENGES {
            live.retain(|_, (_, exp)| *exp > now);
            if live.len() >= MAX_CHALLENGES {
                return Err(ApiError::new(
                    ErrorCode::RateLimited,
                    "too many pending challenges",
                ));
            }
        }
        live.insert(challenge, (device, now + CHALLENGE_TTL));
        Ok(challenge)
    }

    /// Takes a challenge (single use); true if it was live and for `device`.
    pub fn take(&self, challenge: &[u8], device: &DeviceAddress) -> bool {
        let Ok(key) = <[u8; 32]>::try_from(challenge) else {
            return false;
        };
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match live.remove(&key) {
            Some((owner, exp)) => owner == *device && exp > Instant::now(),
            None => false,
        }
    }
}

/// 32 bytes from the operating system.
pub fn random32() -> Result<[u8; 32], ApiError> {
    let mut b = [0u8; 32];
    OsRng
        .try_fill_bytes(&mut b)
        .map_err(|e| ApiError::internal(format!("OS randomness: {e}")))?;
    Ok(b)
}

/// A new bearer token and the hash to store.
pub fn new_token() -> Result<(String, [u8; 32]), ApiError> {
    let token = URL_SAFE_NO_PAD.encode(random32()?);
    let hash = token_hash(&token);
    Ok((token, hash))
}

pub fn token_hash(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// The authenticated device of a request (`Authorization: Bearer ...`).
#[derive(Debug, Clone)]
pub struct AuthDevice(pub DeviceAddress);

/// Optional authentication: no `Authorization` header is `None` (public
/// calls such as the directory root for auditors); a bad one is refused.
impl axum::extract::OptionalFromRequestParts<AppState> for AuthDevice {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Option<Self>, ApiError> {
        if parts.headers.get(AUTHORIZATION).is_none() {
            return Ok(None);
        }
        <Self as FromRequestParts<AppState>>::from_request_parts(parts, state)
            .await
            .map(Some)
    }
}

impl FromRequestParts<AppState> for AuthDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let header = parts
            .headers
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .ok_or_else(ApiError::unauthorized)?;
        let token = header
            .strip_prefix("Bearer ")
            .map(str::trim)
            .filter(|t| !t.is_empty() && t.len() <= 128)
            .ok_or_else(ApiError::unauthorized)?;
        let hash = token_hash(token);
        let now = crate::now_ms();
        if let Some(device) = state.sessions.get(&hash, now) {
            state.standing.check_not_revoked(&device)?;
            return Ok(AuthDevice(device));
        }
        let store = state.store.clone();
        let found = tokio::task::spawn_blocking(move || store.token_device(&hash, now)).await??;
        let (device, expires) = found.ok_or_else(ApiError::unauthorized)?;
        state.standing.check_not_revoked(&device)?;
        state.sessions.insert(hash, device.clone(), expires);
        Ok(AuthDevice(device))
    }
}

/// An authenticated device that may write to others (create a
/// conversation, commit, send): approved. A device waiting for its
/// approval gets `device_pending`.
#[derive(Debug, Clone)]
pub struct ApprovedDevice(pub DeviceAddress);

impl FromRequestParts<AppState> for ApprovedDevice {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthDevice(device) = AuthDevice::from_request_parts(parts, state).await?;
        state
            .standing
            .require_approved(&state.store, &device)
            .await?;
        Ok(Self(device))
    }
}
