//! Per-device rate limits, checked right after authentication and before a
//! request's body is parsed or any cryptography runs, so that one flooding
//! account costs the server a hash lookup per request and slows nobody else.

use crate::auth::{ApprovedDevice, AuthDevice};
use crate::error::ApiError;
use crate::state::AppState;
use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use valise_proto::wire::{LETTERS_HEADER, MAX_BATCH_LETTERS};
use valise_proto::{DeviceAddress, ErrorCode};

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
}

impl Default for Limits {
    /// Far above what a person does (a load generator may need more), far
    /// below the server's capacity of a few thousand letters per second.
    fn default() -> Self {
        Self {
            sends_per_second: 500,
            claims_per_minute: 120,
            commits_per_minute: 120,
        }
    }
}

/// Token buckets, one per device: a burst of `capacity`, refilled at `rate`
/// per second.
#[derive(Debug)]
pub struct Buckets {
    rate: f64,
    capacity: f64,
    devices: Mutex<HashMap<DeviceAddress, (f64, Instant)>>,
}

/// Devices tracked before idle entries are dropped (bounds memory).
const MAX_TRACKED: usize = 100_000;

impl Buckets {
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
    pub fn take(&self, device: &DeviceAddress, now: Instant) -> Result<(), Duration> {
        self.take_many(device, 1, now)
    }

    /// Takes `n` tokens at once (at most a full bucket), or says how long
    /// to wait for them.
    pub fn take_many(&self, device: &DeviceAddress, n: u32, now: Instant) -> Result<(), Duration> {
        let n = f64::from(n).min(self.capacity);
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
        if *tokens >= n {
            *tokens -= n;
            Ok(())
        } else {
            Err(Duration::from_secs_f64(
                (n - *tokens) / self.rate.max(f64::MIN_POSITIVE),
            ))
        }
    }
}

/// The buckets of a running server.
#[derive(Debug)]
pub struct RateLimits {
    pub sends: Buckets,
    pub claims: Buckets,
    pub commits: Buckets,
}

impl From<Limits> for RateLimits {
    fn from(l: Limits) -> Self {
        Self {
            sends: Buckets::per_second(l.sends_per_second),
            claims: Buckets::per_minute(l.claims_per_minute),
            commits: Buckets::per_minute(l.commits_per_minute),
        }
    }
}

fn admit(bucket: &Buckets, device: &DeviceAddress, what: &str) -> Result<(), ApiError> {
    admit_many(bucket, device, 1, what)
}

fn admit_many(
    bucket: &Buckets,
    device: &DeviceAddress,
    n: u32,
    what: &str,
) -> Result<(), ApiError> {
    bucket.take_many(device, n, Instant::now()).map_err(|wait| {
        ApiError::new(
            ErrorCode::RateLimited,
            format!("too many {what}; retry in {} ms", wait.as_millis().max(1)),
        )
    })
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
        admit_many(&state.limits.sends, &device, letters, "letters")?;
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
        admit(&state.limits.claims, &device, "key-package claims")?;
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
        admit(&state.limits.commits, &device, "commits")?;
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
        admit(&state.limits.commits, &device, "device changes")?;
        Ok(Self(device))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn dev(n: u8) -> DeviceAddress {
        DeviceAddress::parse(&format!("u{n}@mfa.example/00000000000000{n:02x}")).unwrap()
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
    fn per_minute_buckets() {
        let b = Buckets::per_minute(2);
        let t0 = Instant::now();
        assert!(b.take(&dev(1), t0).is_ok());
        assert!(b.take(&dev(1), t0).is_ok());
        assert!(b.take(&dev(1), t0).is_err());
        assert!(b.take(&dev(1), t0 + Duration::from_secs(30)).is_ok());
    }
}
