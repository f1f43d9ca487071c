//! `valised`: the Valise server. It stores and forwards ciphertext only, and
//! is the hub of the conversations created on it: it orders their commits
//! and follows their public MLS state to hand the tree to joiners.
#![forbid(unsafe_code)]

pub mod accreditation;
#[cfg(feature = "adversary")]
pub mod adversary;
pub mod audit;
pub mod auth;
pub mod background;
pub mod backup;
pub mod client_addr;
pub mod config;
pub mod datadir;
pub mod delivery;
pub mod device_change;
pub mod directory;
pub mod directory_keys;
pub mod error;
pub mod housekeeping;
pub mod info;
pub mod invite;
pub mod json;
pub mod limits;
pub mod metrics;
pub mod routes;
pub mod rules;
pub mod server;
pub mod standing;
pub mod state;
pub mod store;
pub mod tls;
pub mod webhook;

pub use server::serve;
pub use state::AppState;

/// Milliseconds since the Unix epoch (0 if the clock is before it).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// Seconds since the Unix epoch, the clock the MLS checks take.
pub fn now_s() -> u64 {
    u64::try_from(now_ms() / 1000).unwrap_or(0)
}
