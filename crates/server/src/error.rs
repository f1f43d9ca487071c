//! The one place where failures become RFC 9457 problems on the wire.

use crate::device_change::DeviceChangeError;
use crate::directory::DirectoryServiceError;
use crate::store::StoreError;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use valise_mls::Refusal;
use valise_proto::{ErrorCode, Problem};

/// An error a handler answers with.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub detail: String,
    pub current_epoch: Option<u64>,
    pub retry_after_ms: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            code,
            detail: detail.into(),
            current_epoch: None,
            retry_after_ms: None,
        }
    }

    pub fn bad_request(detail: impl Into<String>) -> Self {
        Self::new(ErrorCode::BadRequest, detail)
    }

    pub fn unauthorized() -> Self {
        Self::new(
            ErrorCode::Unauthorized,
            "missing, invalid or expired credentials",
        )
    }

    /// The device was revoked: it may not log in any more.
    pub fn device_revoked() -> Self {
        Self::new(ErrorCode::DeviceRevoked, "this device was revoked")
    }

    /// The device waits for another device of its user to approve it.
    pub fn device_pending() -> Self {
        Self::new(
            ErrorCode::DevicePending,
            "this device waits for another device of its user to approve it",
        )
    }

    pub fn stale_epoch(current: u64) -> Self {
        Self {
            code: ErrorCode::StaleEpoch,
            detail: format!("the conversation is at epoch {current}"),
            current_epoch: Some(current),
            retry_after_ms: None,
        }
    }

    /// Over a rate limit: the same request goes after `wait`.
    pub fn rate_limited(what: &str, wait: std::time::Duration) -> Self {
        let ms = u64::try_from(wait.as_millis()).unwrap_or(u64::MAX).max(1);
        Self {
            code: ErrorCode::RateLimited,
            detail: format!("too many {what}; retry in {ms} ms"),
            current_epoch: None,
            retry_after_ms: Some(ms),
        }
    }

    /// A server-side failure: the cause goes to the log, not to the client.
    pub fn internal(cause: impl std::fmt::Display) -> Self {
        tracing::error!(%cause, "internal error");
        Self::new(ErrorCode::Internal, "the server failed; nothing was stored")
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::StaleEpoch { current } => Self::stale_epoch(current),
            StoreError::AlreadyExists => Self::new(ErrorCode::AlreadyExists, "already exists"),
            StoreError::NotFound => Self::new(ErrorCode::NotFound, "not found"),
            StoreError::NotMember => Self::new(
                ErrorCode::NotMember,
                "this device is not a member of the conversation",
            ),
            StoreError::InvalidInvite => Self::new(
                ErrorCode::InvalidInvite,
                "the invite code is unknown, used, expired or for another user",
            ),
            // A concurrent change to the user's devices came first: read
            // them again.
            StoreError::Changed(detail) => Self::new(ErrorCode::AlreadyExists, detail),
            StoreError::Full => {
                tracing::error!("storage is full: refusing writes");
                Self::new(
                    ErrorCode::StorageFull,
                    "the server's storage is full; nothing was stored, retry later",
                )
            }
            StoreError::QuotaExceeded => Self::new(
                ErrorCode::StorageFull,
                "your account keeps as much as its storage quota allows; nothing was stored \
                 (your devices free room as they read their inboxes)",
            ),
            StoreError::UnknownPosition => Self::new(
                ErrorCode::UnknownCursor,
                "this server never handed out that inbox cursor (it was restored from an \
                 older copy of its data): read again from the start",
            ),
            StoreError::Corrupt(_) | StoreError::Incompatible(_) | StoreError::Sqlite(_) => {
                Self::internal(e)
            }
        }
    }
}

impl From<valise_directory::DirectoryError> for ApiError {
    fn from(e: valise_directory::DirectoryError) -> Self {
        use valise_directory::DirectoryError;
        match e {
            DirectoryError::NotFound(user) => Self::new(
                ErrorCode::NotFound,
                format!("no directory entry for {user}"),
            ),
            DirectoryError::InvalidRequest(detail) => Self::bad_request(detail),
            other => Self::internal(other),
        }
    }
}

impl From<DirectoryServiceError> for ApiError {
    fn from(e: DirectoryServiceError) -> Self {
        match e {
            DirectoryServiceError::Directory(e) => e.into(),
            DirectoryServiceError::Store(e) => e.into(),
            DirectoryServiceError::NoSuchEpoch(epoch) => Self::new(
                ErrorCode::NotFound,
                format!("epoch {epoch} is not published"),
            ),
            DirectoryServiceError::BadRange(detail) => Self::bad_request(detail),
            DirectoryServiceError::Timeout | DirectoryServiceError::Stopped(_) => Self::internal(e),
        }
    }
}

impl From<DeviceChangeError> for ApiError {
    fn from(e: DeviceChangeError) -> Self {
        let code = match e {
            DeviceChangeError::UnknownDevice(_) => ErrorCode::NotFound,
            DeviceChangeError::CallerNotApproved(_) => ErrorCode::Forbidden,
            DeviceChangeError::Already { .. } => ErrorCode::AlreadyExists,
            DeviceChangeError::Revoked(_)
            | DeviceChangeError::WrongNumber { .. }
            | DeviceChangeError::WrongAt { .. }
            | DeviceChangeError::BadSignature(_) => ErrorCode::BadRequest,
            DeviceChangeError::Unpublishable(_) => return Self::internal(e),
        };
        Self::new(code, e.to_string())
    }
}

impl From<Refusal> for ApiError {
    fn from(e: Refusal) -> Self {
        Self::new(ErrorCode::InvalidMls, e.0)
    }
}

impl From<tokio::task::JoinError> for ApiError {
    fn from(e: tokio::task::JoinError) -> Self {
        Self::internal(e)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut problem = Problem::new(self.code, self.detail);
        problem.current_epoch = self.current_epoch;
        problem.retry_after_ms = self.retry_after_ms;
        let status =
            StatusCode::from_u16(problem.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut resp = (status, body).into_response();
        resp.headers_mut().insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        resp
    }
}
