//! Per-device rate limits, checked right after authentication and before a
//! request's body is parsed or any cryptography runs, so that one flooding
//! account costs the server a hash lookup per request and slows nobody else.
//! A public call (the directory audit) is counted against its caller's
//! device when it brings a token, else against its client address.

use crate::auth::{ApprovedDevice, AuthDevice};
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use valise_proto::DeviceAddress;
use valise_proto::limits::MAX_KEY_PACKAGES_PER_UPLOAD;
use valise_proto::wire::{LETTERS_HEADER, MAX_BATCH_LETTERS};

/// The configured limits (`valised run --max-…`).
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Letters (application messages) per second per device.
    pub sends_per_second: u32,
    /// Key-package claims per minute per device.
    pub claims_per_minute: u32,
    /// Commits and new conversations per minute per device (C6: each costs
    /// the hub a group load and a full MLS check).
    pub commits_per_minute: u32,
    /// Directory audit proofs per minute per device, or per client address
    /// without a token: each may span [`valise_proto::limits::MAX_AUDIT_SPAN`]
    /// epochs of proof work, and anyone may ask.
    pub audits_per_minute: u32,
    /// Key packages uploaded per minute per device: each is verified (two
    /// signatures) and stored. The burst always allows one full upload.
    pub key_packages_per_minute: u32,
}

impl Default for Limits {
    /// Far above what a person does (a load generator may need more), far
    /// below the server's capacity of a few thousand letters per second.
    /// A device audits once per directory epoch it moves past, and epochs
    /// come at most every `--directory-interval-ms` (2 s: 30 a minute); an
    /// auditor catching up covers 120,000 epochs in its first minute. A
    /// device restocks 10 key packages at a time, when fewer than 5 are
    /// left; 240 a minute is a full upload of 200 and then some.
    fn default() -> Self {
        Self {
            sends_per_second: 500,
            claims_per_minute: 120,
            commits_per_minute: 120,
            audits_per_minute: 120,
            key_packages_per_minute: 240,
        }
    }
}

/// Token buckets, one per device (or other caller `K`): a burst of
/// `capacity`, refilled at `rate` per second.
#[derive(Debug)]
pub struct Buckets<K = DeviceAddress> {
    rate: f64,
    capacity: f64,
    devices: Mutex<HashMap<K, (f64, Instant)>>,
}

/// Callers tracked before idle entries are dropped (bounds memory).
const MAX_TRACKED: usize = 100_000;

impl<K: Eq + Hash + Clone> Buckets<K> {
    pub fn per_second(n: u32) -> Self {
        Self::new(f64::from(n), f64::from(n) * 2.0)
    }

    pub fn per_minute(n: u32) -> Self {
        Self::new(f64::from(n) / 60.0, f64::from(n))
    }

    fn new(rate: f64, capacity: f64) -> Self {
        Self {
            rate,
            capacity: capacity.max(1.0),
            devices: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token, or says how long to wait for it.
    pub fn take(&self, device: &K, now: Instant) -> Result<(), Duration> {
        self.take_n(device, 1, now)
    }

    /// Takes `n` tokens at once, or says how long to wait for them.
    pub fn take_n(&self, device: &K, n: u32, now: Instant) -> Result<(), Duration> {
        // A batch larger than the burst goes once the bucket is full, and is
        // charged in full: the bucket goes into debt, paid before the next.
        let n = f64::from(n);
        let needed = n.min(self.capacity);
        let mut devices = self.devices.lock().unwrap_or_else(|p| p.into_inner());
        if devices.len() >= MAX_TRACKED && !devices.contains_key(device) {
            // Idle devices are full buckets anyway: forgetting them is exact.
            let (rate, capacity) = (self.rate, self.capacity);
            devices.retain(|_, (tokens, at)| {
                *tokens + now.duration_since(*at).as_secs_f64() * rate < capacity
            });
        }
        let (tokens, at) = devices
            .entry(device.clone())
            .or_insert((self.capacity, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * self.rate).min(self.capacity);
        *at = now;
        if *tokens >= needed {
            *tokens -= n;
            Ok(())
        } else {
            Err(Duration::try_from_secs_f64((needed - *tokens) / self.rate)
                .unwrap_or(Duration::MAX))
        }
    }
}

/// Whom a public call is counted against.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Caller {
    /// The device whose token came with the call.
    Device(DeviceAddress),
    /// The client address of a call without a token.
    Address(ClientAddr),
}

/// The buckets of a running server.
#[derive(Debug)]
pub struct RateLimits {
    pub sends: Buckets,
    pub claims: Buckets,
    pub commits: Buckets,
    pub audits: Buckets<Caller>,
    pub key_packages: Buckets,
}

impl From<Limits> for RateLimits {
    fn from(l: Limits) -> Self {
        let full_upload = u32::try_from(MAX_KEY_PACKAGES_PER_UPLOAD + 1).unwrap_or(u32::MAX);
        Self {
            sends: Buckets::per_second(l.sends_per_second),
            claims: Buckets::per_minute(l.claims_per_minute),
            commits: Buckets::per_minute(l.commits_per_minute),
            audits: Buckets::per_minute(l.audits_per_minute),
            key_packages: Buckets::new(
                f64::from(l.key_packages_per_minute) / 60.0,
                f64::from(l.key_packages_per_minute.max(full_upload)),
            ),
        }
    }
}

fn admit<K: Eq + Hash + Clone>(
    bucket: &Buckets<K>,
    caller: &K,
    n: u32,
    what: &str,
) -> Result<(), ApiError> {
    bucket
        .take_n(caller, n, Instant::now())
        .map_err(|wait| ApiError::rate_limited(what, wait))
}

/// Counts `n` uploaded key packages against `device`'s allowance, after
/// the body is parsed and before any of them is verified. A stock check
/// (an upload of none) costs nothing.
pub fn admit_key_packages(
    state: &AppState,
    device: &DeviceAddress,
    n: usize,
) -> Result<(), ApiError> {
    if n == 0 {
        return Ok(());
    }
    let n = u32::try_from(n).unwrap_or(u32::MAX);
    admit(&state.limits.key_packages, device, n, "key packages")
}

/// An approved device within its letters-per-second allowance for the
/// batch it sends, counted from the request's letter count header before
/// the body is read.
#[derive(Debug)]
pub struct SendPermit {
    pub device: DeviceAddress,
    /// Letters the body must hold.
    pub letters: usize,
}

impl FromRequestParts<AppState> for SendPermit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ApprovedDevice(device) = ApprovedDevice::from_request_parts(parts, state).await?;
        let letters = parts
            .headers
            .get(LETTERS_HEADER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.parse::<u32>().ok())
            .filter(|n| (1..=MAX_BATCH_LETTERS as u32).contains(n))
            .ok_or_else(|| {
                ApiError::bad_request(format!(
                    "header {LETTERS_HEADER} must give the batch's letter count, 1 to {MAX_BATCH_LETTERS}"
                ))
            })?;
        admit(&state.limits.sends, &device, letters, "letters")?;
        Ok(Self {
            device,
            letters: letters as usize,
        })
    }
}

/// An authenticated device within its key-package claims-per-minute allowance.
#[derive(Debug)]
pub struct ClaimPermit(pub DeviceAddress);

impl FromRequestParts<AppState> for ClaimPermit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthDevice(device) = AuthDevice::from_request_parts(parts, state).await?;
        admit(&state.limits.claims, &device, 1, "key-package claims")?;
        Ok(Self(device))
    }
}

/// An approved device within its commits-per-minute allowance.
#[derive(Debug)]
pub struct CommitPermit(pub DeviceAddress);

impl FromRequestParts<AppState> for CommitPermit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let ApprovedDevice(device) = ApprovedDevice::from_request_parts(parts, state).await?;
        admit(&state.limits.commits, &device, 1, "commits")?;
        Ok(Self(device))
    }
}

/// An authenticated device within the same allowance, for changes to its
/// user's devices (approval, revocation): each checks every signature of
/// the user's list. Whether the device may make the change is the
/// handler's to say.
#[derive(Debug)]
pub struct DeviceChangePermit(pub DeviceAddress);

impl FromRequestParts<AppState> for DeviceChangePermit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let AuthDevice(device) = AuthDevice::from_request_parts(parts, state).await?;
        admit(&state.limits.commits, &device, 1, "device changes")?;
        Ok(Self(device))
    }
}

/// A directory audit within its caller's allowance: that of the device
/// whose token it brings, else that of its client address.
#[derive(Debug)]
pub struct AuditPermit(pub Option<AuthDevice>);

impl FromRequestParts<AppState> for AuditPermit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let caller =
            <AuthDevice as axum::extract::OptionalFromRequestParts<AppState>>::from_request_parts(
                parts, state,
            )
            .await?;
        let counted =
            match &caller {
                Some(AuthDevice(device)) => Caller::Device(device.clone()),
                None => {
                    Caller::Address(parts.extensions.get::<ClientAddr>().copied().ok_or_else(
                        || ApiError::internal("a request without its client address"),
                    )?)
                }
            };
        admit(&state.limits.audits, &counted, 1, "directory audits")?;
        Ok(Self(caller))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceAddress {
        DeviceAddress::parse(&format!("u{n}@mfa.example/00000000000000{n:02x}")).unwrap()
    }

    /// A batch larger than the burst goes, but is charged in full: at 10
    /// letters/s a batch of 256 buys no more than 256 letters' worth of time.
    #[test]
    fn a_batch_beyond_the_burst_is_charged_in_full() {
        let b = Buckets::per_second(10); // burst 20
        let t0 = Instant::now();
        assert!(b.take_n(&dev(1), 256, t0).is_ok());
        // 256 - 20 = 236 letters of debt: 23.6 s before the next letter.
        assert!(b.take_n(&dev(1), 1, t0 + Duration::from_secs(23)).is_err());
        assert!(b.take_n(&dev(1), 1, t0 + Duration::from_secs(24)).is_ok());
        // Nobody else pays for it.
        assert!(b.take_n(&dev(2), 20, t0).is_ok());
    }

    #[test]
    fn bursts_then_refills_per_device() {
        let b = Buckets::per_second(10); // burst 20
        let t0 = Instant::now();
        for _ in 0..20 {
            assert!(b.take(&dev(1), t0).is_ok());
        }
        let wait = b.take(&dev(1), t0).unwrap_err();
        assert!(wait <= Duration::from_millis(100) && wait > Duration::ZERO);
        // Another device is not affected by the first one's flood.
        assert!(b.take(&dev(2), t0).is_ok());
        // After 100 ms one more token has arrived.
        assert!(b.take(&dev(1), t0 + Duration::from_millis(100)).is_ok());
        assert!(b.take(&dev(1), t0 + Duration::from_millis(100)).is_err());
    }

    #[test]
    fn takes_several_at_once_and_counts_callers_apart() {
        let b: Buckets<Caller> = Buckets::per_minute(10);
        let t0 = Instant::now();
        let anonymous = Caller::Address(ClientAddr::of("192.0.2.1".parse().unwrap()));
        assert!(b.take_n(&anonymous, 8, t0).is_ok());
        // Two left; two more take 12 s to arrive at 10 a minute.
        let wait = b.take_n(&anonymous, 4, t0).unwrap_err();
        assert!(wait > Duration::from_millis(11_900) && wait < Duration::from_millis(12_100));
        assert!(b.take_n(&anonymous, 2, t0).is_ok());
        assert!(b.take(&anonymous, t0).is_err());
        // A device is counted on its own, whatever address it comes from.
        assert!(b.take(&Caller::Device(dev(1)), t0).is_ok());
    }

    #[test]
    fn a_full_key_package_upload_always_fits_the_burst() {
        let limits = RateLimits::from(Limits {
            key_packages_per_minute: 6,
            ..Limits::default()
        });
        let t0 = Instant::now();
        let full = u32::try_from(MAX_KEY_PACKAGES_PER_UPLOAD + 1).unwrap();
        assert!(limits.key_packages.take_n(&dev(1), full, t0).is_ok());
        assert!(limits.key_packages.take(&dev(1), t0).is_err());
        // Then 6 a minute: one every 10 s.
        assert!(
            limits
                .key_packages
                .take(&dev(1), t0 + Duration::from_secs(10))
                .is_ok()
        );
    }

    #[test]
    fn per_minute_buckets() {
        let b = Buckets::per_minute(2);
        let t0 = Instant::now();
        assert!(b.take(&dev(1), t0).is_ok());
        assert!(b.take(&dev(1), t0).is_ok());
        assert!(b.take(&dev(1), t0).is_err());
        assert!(b.take(&dev(1), t0 + Duration::from_secs(30)).is_ok());
    }
}
