//! Errors of the bridge, each with a stable code. None carries letter
//! content, the bridge password or a key.

use valise_client::ClientError;

#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    #[error("refusing to listen on {0}: the bridge serves this machine only (127.0.0.1 or ::1)")]
    NotLoopback(std::net::SocketAddr),
    #[error("the bridge is not set up in this home: run `valise-bridge init` first")]
    NotInitialised,
    #[error(
        "the bridge is already set up in this home (`valise-bridge password --reset` gives a new password)"
    )]
    AlreadyInitialised,
    #[error("bridge password hashing failed: {0}")]
    Hash(String),
    #[error("TLS: {0}")]
    Tls(String),
    #[error("{path}: {reason}")]
    File { path: String, reason: String },
    #[error(transparent)]
    Client(#[from] ClientError),
}

impl BridgeError {
    /// Stable, snake_case code for scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotLoopback(_) => "not_loopback",
            Self::NotInitialised => "bridge_not_initialised",
            Self::AlreadyInitialised => "bridge_already_initialised",
            Self::Hash(_) => "bridge_hash",
            Self::Tls(_) => "bridge_tls",
            Self::File { .. } => "bridge_file",
            Self::Client(e) => e.code(),
        }
    }
}

pub type Result<T, E = BridgeError> = std::result::Result<T, E>;
