//! Device authentication: a challenge signed with the device's MLS signature
//! key buys a short-lived bearer token. Only hashes of tokens are stored, so
//! a copy of the database logs nobody in. A revoked device is refused
//! (`device_revoked`) whatever token it holds; only an approved device may
//! write ([`ApprovedDevice`]).

use crate::audit::Event;
use crate::client_addr::ClientAddr;
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
use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};
use valise_proto::DeviceAddress;
use valise_proto::audit::{Action, Actor};

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
/// Most challenges held at once: bounds memory under a flood (about 200
/// bytes each).
const MAX_CHALLENGES: usize = 100_000;
/// Most challenges held at once for one device. A device asks for one at a
/// time; a few allow for a retry while an answer is on its way.
const MAX_CHALLENGES_PER_DEVICE: usize = 4;

/// Outstanding challenges, in memory only: a restart just makes clients ask
/// again. Anyone may ask for a challenge for any enrolled device, so asking
/// is never refused: a device over [`MAX_CHALLENGES_PER_DEVICE`] loses its
/// oldest challenge, and past [`MAX_CHALLENGES`] in all the oldest one goes.
/// A flood for one device thus only ever displaces that device's own
/// challenges, and a flood spread over many devices displaces challenges
/// older than the time an honest device takes to sign one (the flood would
/// have to issue [`MAX_CHALLENGES`] meanwhile).
#[derive(Debug)]
pub struct Challenges {
    /// Most held in all, and for one device.
    max: usize,
    per_device: usize,
    live: Mutex<Pending>,
}

impl Default for Challenges {
    fn default() -> Self {
        Self::with_caps(MAX_CHALLENGES, MAX_CHALLENGES_PER_DEVICE)
    }
}

/// The challenges held: per device in the order issued, and all of them in
/// the order issued (by serial number), for the oldest to go first.
#[derive(Debug, Default)]
struct Pending {
    by_device: HashMap<DeviceAddress, VecDeque<Challenge>>,
    by_age: BTreeMap<u64, DeviceAddress>,
    next_serial: u64,
}

#[derive(Debug)]
struct Challenge {
    serial: u64,
    bytes: [u8; 32],
    expires: Instant,
}

impl Pending {
    /// Drops the oldest challenge of all.
    fn drop_oldest(&mut self) {
        if let Some((_, device)) = self.by_age.pop_first() {
            self.drop_first_of(&device);
        }
    }

    /// Drops `device`'s oldest challenge (which the caller has taken out of
    /// `by_age`), and the device when it has none left.
    fn drop_first_of(&mut self, device: &DeviceAddress) {
        if let Some(held) = self.by_device.get_mut(device) {
            held.pop_front();
            if held.is_empty() {
                self.by_device.remove(device);
            }
        }
    }

    /// Drops expired challenges, oldest first (they expire in serial order).
    fn drop_expired(&mut self, now: Instant) {
        while let Some((_, device)) = self.by_age.first_key_value() {
            let expired = self
                .by_device
                .get(device)
                .and_then(VecDeque::front)
                .is_none_or(|c| c.expires <= now);
            if !expired {
                return;
            }
            self.drop_oldest();
        }
    }
}

impl Challenges {
    fn with_caps(max: usize, per_device: usize) -> Self {
        Self {
            max,
            per_device,
            live: Mutex::default(),
        }
    }

    /// Issues a fresh challenge for `device`, displacing an older one if
    /// `device` or the server holds too many.
    pub fn issue(&self, device: DeviceAddress) -> Result<[u8; 32], ApiError> {
        let bytes = random32()?;
        let now = Instant::now();
        let mut p = self.live.lock().unwrap_or_else(|p| p.into_inner());
        p.drop_expired(now);
        let held = p.by_device.get(&device).map_or(0, VecDeque::len);
        if held >= self.per_device {
            let oldest = p.by_device.get(&device).and_then(VecDeque::front);
            if let Some(serial) = oldest.map(|c| c.serial) {
                p.by_age.remove(&serial);
                p.drop_first_of(&device);
            }
        }
        if p.by_age.len() >= self.max {
            p.drop_oldest();
        }
        let serial = p.next_serial;
        p.next_serial += 1;
        p.by_age.insert(serial, device.clone());
        p.by_device.entry(device).or_default().push_back(Challenge {
            serial,
            bytes,
            expires: now + CHALLENGE_TTL,
        });
        Ok(bytes)
    }

    /// Takes a challenge (single use); true if it was live and for `device`.
    pub fn take(&self, challenge: &[u8], device: &DeviceAddress) -> bool {
        let mut p = self.live.lock().unwrap_or_else(|p| p.into_inner());
        let Some(held) = p.by_device.get_mut(device) else {
            return false;
        };
        let Some(at) = held.iter().position(|c| c.bytes.as_slice() == challenge) else {
            return false;
        };
        let taken = held.remove(at);
        if held.is_empty() {
            p.by_device.remove(device);
        }
        match taken {
            Some(c) => {
                p.by_age.remove(&c.serial);
                c.expires > Instant::now()
            }
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
            check_not_revoked(state, parts, &device)?;
            return Ok(AuthDevice(device));
        }
        let store = state.store.clone();
        let found = tokio::task::spawn_blocking(move || store.token_device(&hash, now)).await??;
        let (device, expires) = found.ok_or_else(ApiError::unauthorized)?;
        check_not_revoked(state, parts, &device)?;
        state.sessions.insert(hash, device.clone(), expires);
        Ok(AuthDevice(device))
    }
}

/// Refuses a revoked device's token, and puts the attempt on record as a
/// failed authentication (`device_revoked`, stage `bearer`): a revoked
/// device that still tries is what the `revoked_device_activity` rule
/// watches for ([`crate::rules`]).
fn check_not_revoked(
    state: &AppState,
    parts: &Parts,
    device: &DeviceAddress,
) -> Result<(), ApiError> {
    state.standing.check_not_revoked(device).inspect_err(|e| {
        state.evidence.emit(
            Event::new(Actor::Anonymous, Action::AuthFailed)
                .on_device(device)
                .from(parts.extensions.get::<ClientAddr>().copied())
                .text("stage", "bearer")
                .refused(e),
        );
    })
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

#[cfg(test)]
mod tests {
    use super::*;
    use valise_proto::{DeviceId, UserId};

    fn dev(n: u8) -> DeviceAddress {
        DeviceAddress::new(
            UserId::parse("alice@mfa.example").unwrap(),
            DeviceId::from_bytes([n; 8]),
        )
    }

    fn held(c: &Challenges) -> usize {
        let p = c.live.lock().unwrap();
        assert_eq!(
            p.by_age.len(),
            p.by_device.values().map(VecDeque::len).sum::<usize>()
        );
        p.by_age.len()
    }

    #[test]
    fn a_flood_for_one_device_displaces_only_its_own_challenges() {
        let c = Challenges::with_caps(10, 3);
        let other = c.issue(dev(2)).unwrap();
        let first = c.issue(dev(1)).unwrap();
        let flood: Vec<_> = (0..50).map(|_| c.issue(dev(1)).unwrap()).collect();
        assert_eq!(held(&c), 4);
        assert!(!c.take(&first, &dev(1)), "displaced by the flood");
        assert!(c.take(&flood[49], &dev(1)), "the newest stays");
        assert!(c.take(&other, &dev(2)), "another device is untouched");
        // Single use, and only for its own device.
        assert!(!c.take(&other, &dev(2)));
        assert!(!c.take(&flood[48], &dev(2)));
        assert!(c.take(&flood[48], &dev(1)));
        assert_eq!(held(&c), 1);
    }

    #[test]
    fn past_the_total_cap_the_oldest_goes() {
        let c = Challenges::with_caps(10, 3);
        let issued: Vec<_> = (0..12u8).map(|n| (n, c.issue(dev(n)).unwrap())).collect();
        assert_eq!(held(&c), 10);
        for (n, challenge) in &issued {
            assert_eq!(c.take(challenge, &dev(*n)), *n >= 2, "device {n}");
        }
        assert_eq!(held(&c), 0);
        assert!(c.live.lock().unwrap().by_device.is_empty());
    }

    #[test]
    fn expired_challenges_are_refused_and_dropped() {
        let c = Challenges::default();
        let challenge = c.issue(dev(1)).unwrap();
        {
            let mut p = c.live.lock().unwrap();
            let held = p.by_device.get_mut(&dev(1)).unwrap();
            held[0].expires = Instant::now();
        }
        c.issue(dev(2)).unwrap();
        assert_eq!(held(&c), 1, "the expired one went at the next issue");
        assert!(!c.take(&challenge, &dev(1)));
        let again = c.issue(dev(1)).unwrap();
        c.live.lock().unwrap().by_device.get_mut(&dev(1)).unwrap()[0].expires = Instant::now();
        assert!(!c.take(&again, &dev(1)), "expired");
    }
}
