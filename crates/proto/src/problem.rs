//! Errors on the wire: RFC 9457 problem details with a stable `code`.
//!
//! The code is the contract; titles and details are for people and may change.

use serde::{Deserialize, Serialize};

/// Stable error codes. Never renamed or reused; new ones are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body or a parameter could not be parsed.
    BadRequest,
    /// The body is larger than the endpoint accepts.
    PayloadTooLarge,
    /// The content type is not the one the endpoint takes.
    UnsupportedMediaType,
    /// No valid token, or a challenge that failed.
    Unauthorized,
    /// The caller is authenticated but may not do this.
    Forbidden,
    /// The invite code is unknown, used or expired.
    InvalidInvite,
    /// The user, device or conversation does not exist.
    NotFound,
    /// Already exists (device id, conversation id).
    AlreadyExists,
    /// A commit or message for an epoch that is not the current one.
    StaleEpoch,
    /// The device is not a member of the conversation.
    NotMember,
    /// The MLS message, key package or group info is invalid.
    InvalidMls,
    /// A user has no device with a key package to claim.
    NoKeyPackage,
    /// Too many requests; retry later.
    RateLimited,
    /// The server failed; nothing was stored.
    Internal,
    /// The server's storage is full; nothing was stored. Retry later.
    StorageFull,
    /// The device was revoked (by its user or the administrator): it may
    /// not log in any more.
    DeviceRevoked,
    /// The device waits for another device of its user to approve it, and
    /// may not write to anyone until then.
    DevicePending,
    /// The inbox cursor names a log position this server never handed out:
    /// it was restored from an older copy of its data. Read again from the
    /// start and re-send what the server no longer has.
    UnknownCursor,
    /// A blob part sent at an offset other than the blob's durable one
    /// (`HEAD` says where to resume).
    UploadOffset,
    /// A code this client does not know (a newer server).
    #[serde(other)]
    Unknown,
}

impl ErrorCode {
    /// The HTTP status that carries this code.
    pub fn status(self) -> u16 {
        match self {
            Self::BadRequest | Self::InvalidMls => 400,
            Self::Unauthorized | Self::InvalidInvite | Self::DeviceRevoked => 401,
            Self::Forbidden | Self::NotMember | Self::DevicePending => 403,
            Self::NotFound | Self::NoKeyPackage => 404,
            Self::AlreadyExists | Self::StaleEpoch | Self::UnknownCursor | Self::UploadOffset => {
                409
            }
            Self::PayloadTooLarge => 413,
            Self::UnsupportedMediaType => 415,
            Self::RateLimited => 429,
            Self::Internal | Self::Unknown => 500,
            Self::StorageFull => 507,
        }
    }

    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::BadRequest => "bad_request",
            Self::PayloadTooLarge => "payload_too_large",
            Self::UnsupportedMediaType => "unsupported_media_type",
            Self::Unauthorized => "unauthorized",
            Self::Forbidden => "forbidden",
            Self::InvalidInvite => "invalid_invite",
            Self::NotFound => "not_found",
            Self::AlreadyExists => "already_exists",
            Self::StaleEpoch => "stale_epoch",
            Self::NotMember => "not_member",
            Self::InvalidMls => "invalid_mls",
            Self::NoKeyPackage => "no_key_package",
            Self::RateLimited => "rate_limited",
            Self::Internal => "internal",
            Self::StorageFull => "storage_full",
            Self::DeviceRevoked => "device_revoked",
            Self::DevicePending => "device_pending",
            Self::UnknownCursor => "unknown_cursor",
            Self::UploadOffset => "upload_offset",
            Self::Unknown => "unknown",
        }
    }
}

/// An RFC 9457 problem details document (`application/problem+json`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Problem {
    /// `urn:valise:problem:<code>`.
    #[serde(rename = "type")]
    pub kind: String,
    pub title: String,
    pub status: u16,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub detail: Option<String>,
    pub code: ErrorCode,
    /// For `stale_epoch`: the conversation's current epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub current_epoch: Option<u64>,
    /// For `rate_limited`: how long to wait before the same request goes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_after_ms: Option<u64>,
}

impl Problem {
    pub fn new(code: ErrorCode, detail: impl Into<String>) -> Self {
        Self {
            kind: format!("urn:valise:problem:{}", code.as_str()),
            title: code.as_str().replace('_', " "),
            status: code.status(),
            detail: Some(detail.into()),
            code,
            current_epoch: None,
            retry_after_ms: None,
        }
    }
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({})", self.title, self.code.as_str())?;
        if let Some(d) = &self.detail {
            write!(f, ": {d}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_stable_on_the_wire() {
        let p = Problem::new(ErrorCode::StaleEpoch, "epoch 3 is current");
        let j = serde_json::to_value(&p).unwrap();
        assert_eq!(j["code"], "stale_epoch");
        assert_eq!(j["type"], "urn:valise:problem:stale_epoch");
        assert_eq!(j["status"], 409);
        let unknown: Problem =
            serde_json::from_str(r#"{"type":"x","title":"t","status":418,"code":"teapot"}"#)
                .unwrap();
        assert_eq!(unknown.code, ErrorCode::Unknown);
        for c in [
            ErrorCode::BadRequest,
            ErrorCode::InvalidMls,
            ErrorCode::RateLimited,
        ] {
            assert_eq!(serde_json::to_value(c).unwrap(), c.as_str());
        }
    }
}
