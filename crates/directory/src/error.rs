//! One error type for the whole crate, with stable codes.
//!
//! The code is the contract (clients turn some of them into alerts, the
//! server into problem details); the messages are for people and may change.

use crate::root::SignedRoot;

/// Why a directory operation or a verification failed.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryError {
    /// A signed root does not verify under the directory key the caller pinned.
    #[error("the directory root is not signed by the expected directory key")]
    BadSignature,
    /// A lookup, history or audit proof is malformed or does not verify.
    #[error("directory proof refused: {0}")]
    BadProof(String),
    /// A published value is not a canonical device list.
    #[error("directory entry refused: {0}")]
    BadEntry(String),
    /// A root older than one already accepted.
    #[error("directory rollback: offered epoch {} after epoch {} was seen", offered.epoch(), seen.epoch())]
    Rollback {
        /// The newest root accepted before.
        seen: Box<SignedRoot>,
        /// The older root now offered.
        offered: Box<SignedRoot>,
    },
    /// A second, different root for an epoch already seen.
    #[error("directory split view: two different roots for epoch {}", seen.epoch())]
    SplitView {
        seen: Box<SignedRoot>,
        offered: Box<SignedRoot>,
    },
    /// A root under another VRF key than the roots accepted before: every
    /// label would move, so entries could be re-published from scratch.
    #[error("directory VRF key changed at epoch {}", offered.epoch())]
    VrfKeyChanged {
        seen: Box<SignedRoot>,
        offered: Box<SignedRoot>,
    },
    /// The user has never been published.
    #[error("no directory entry for {0}")]
    NotFound(String),
    /// The caller asked for something that cannot be (duplicate user in one
    /// epoch, epochs out of range).
    #[error("invalid directory request: {0}")]
    InvalidRequest(String),
    /// The persistent store failed; nothing was published.
    #[error("directory storage error: {0}")]
    Storage(String),
    /// The akd library failed for another reason.
    #[error("directory error: {0}")]
    Internal(String),
}

impl DirectoryError {
    /// Stable snake_case code. Never renamed or reused.
    pub fn code(&self) -> &'static str {
        match self {
            Self::BadSignature => "bad_signature",
            Self::BadProof(_) => "bad_proof",
            Self::BadEntry(_) => "bad_entry",
            Self::Rollback { .. } => "rollback",
            Self::SplitView { .. } => "split_view",
            Self::VrfKeyChanged { .. } => "vrf_key_changed",
            Self::NotFound(_) => "not_found",
            Self::InvalidRequest(_) => "invalid_request",
            Self::Storage(_) => "storage",
            Self::Internal(_) => "internal",
        }
    }

    /// True for the errors that mean the server (or someone holding it)
    /// misbehaved: a client alerts on these rather than retrying.
    pub fn is_evidence(&self) -> bool {
        matches!(
            self,
            Self::BadSignature
                | Self::BadProof(_)
                | Self::BadEntry(_)
                | Self::Rollback { .. }
                | Self::SplitView { .. }
                | Self::VrfKeyChanged { .. }
        )
    }
}

impl From<akd::errors::AkdError> for DirectoryError {
    fn from(e: akd::errors::AkdError) -> Self {
        use akd::errors::{AkdError, StorageError};
        match e {
            AkdError::Storage(StorageError::NotFound(what)) => Self::NotFound(what),
            AkdError::Storage(other) => Self::Storage(other.to_string()),
            other => Self::Internal(other.to_string()),
        }
    }
}
