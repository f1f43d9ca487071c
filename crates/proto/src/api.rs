//! JSON bodies of the `/v1` HTTP API. MLS objects travel as their RFC 9420
//! bytes, base64 in JSON ([`Bytes`]).
//!
//! | call | request | response |
//! |---|---|---|
//! | `POST /v1/enroll` | [`EnrollRequest`] | [`EnrollResponse`] |
//! | `POST /v1/auth/challenge` | [`ChallengeRequest`] | [`ChallengeResponse`] |
//! | `POST /v1/auth/token` | [`TokenRequest`] | [`TokenResponse`] |
//! | `PUT /v1/devices/self/key-packages` | [`KeyPackageUpload`] | [`KeyPackageStock`] |
//! | `POST /v1/users/{user}/key-packages/claim` | [`ClaimRequest`] | [`ClaimResponse`] |
//! | `GET /v1/users/{user}/devices` | – | [`DeviceList`] |
//! | `POST /v1/devices/{device}/approval` | [`ApproveDevice`] | [`DirectoryRoot`] |
//! | `POST /v1/devices/{device}/revocation` | [`RevokeDevice`] | [`DirectoryRoot`] |
//! | `POST /v1/conversations` | [`CreateConversation`] | [`ConversationState`] |
//! | `POST /v1/conversations/{id}/commits` | [`SubmitCommit`] | [`ConversationState`] (409 `stale_epoch`) |
//! | `POST /v1/letters` | binary [`crate::wire`] letters | binary outcomes |
//! | `GET /v1/inbox?after=hex&limit=m&wait_ms=w&count=b` | – | binary [`crate::wire::InboxPage`] (409 `unknown_cursor`) |
//! | `GET /v1/directory/root` | – | [`DirectoryRoot`] |
//! | `GET /v1/directory/lookup/{user}` | – | [`DirectoryProof`] |
//! | `GET /v1/directory/history/{user}` | – | [`DirectoryProof`] |
//! | `GET /v1/directory/audit?from=e&to=f` | – | [`DirectoryAudit`] (no authentication: for auditors) |
//! | `GET /v1/security-desk` | – | [`SecurityDesk`] |
//! | `POST /v1/blobs` (`Upload-Length`) | – | [`BlobCreated`] (400 under [`crate::blob::MIN_BLOB_BYTES`], 413 over the limit, 507 `storage_full` over the quota) |
//! | `PATCH /v1/blobs/{id}` (`Upload-Offset`) | blob bytes, 1 to [`blobs::MAX_PART_BYTES`] | 204, `Upload-Offset` (409 on another offset) |
//! | `HEAD /v1/blobs/{id}` | – | `Upload-Offset`, `Upload-Length` |
//! | `GET /v1/blobs/{id}` (`Range: bytes=a-b`) | – | 206, the bytes (404 until complete) |
//! | `POST /v1/blobs/links` | [`blobs::LinkBlobs`] | [`blobs::BlobsLinked`] |
//!
//! Authenticated calls carry `Authorization: Bearer <token>`.

use crate::bytes::Bytes;
use crate::id::{ConversationId, DeviceAddress, DeviceId, UserId};
use serde::{Deserialize, Serialize};

/// Enrol a new device with a one-time invite code.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EnrollRequest {
    pub user: UserId,
    /// The invite code as printed by `valised admin invite`.
    pub code: String,
    /// Chosen at random by the device.
    pub device: DeviceId,
    /// The device's MLS signature public key (Ed25519 for the default suite).
    pub signature_key: Bytes,
    /// One-time key packages (`KeyPackage` TLS bytes).
    pub key_packages: Vec<Bytes>,
    /// The last-resort key package, used when the one-time ones run out.
    pub last_resort: Bytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct EnrollResponse {
    pub user: UserId,
    pub device: DeviceId,
    /// The server's domain.
    pub domain: String,
    /// The Ed25519 key that signs the key directory's roots. The device pins
    /// it at enrolment (or checks it against one given out of band).
    pub directory_key: Bytes,
    /// The signed root of the epoch that published this device.
    pub root: Bytes,
    /// The audit log's key, which the device pins to check the admin
    /// actions on its account it is shown (absent from older servers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub audit: Option<AuditKeyInfo>,
    /// The audit log position from which the device is shown the
    /// administrator's actions on its account: everything logged or queued
    /// before its enrolment is about its arrival. A position, not a time,
    /// because the server writes the times (a back-dated entry would pass
    /// for history).
    #[serde(default)]
    pub audit_from: u64,
    /// The organisation's security desk, pinned by the device (issue 10).
    #[serde(default)]
    pub security_desk: Option<UserId>,
    /// The accreditation authority's public key (hex), pinned by the
    /// device (issue 11).
    #[serde(default)]
    pub accreditation_authority: Option<String>,
}

/// The newest signed root of the key directory (`SignedRoot::to_bytes`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryRoot {
    pub root: Bytes,
}

/// A lookup or history proof and the signed root it was made against.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryProof {
    pub root: Bytes,
    pub proof: Bytes,
}

/// An append-only proof between two epochs, with both signed roots.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DirectoryAudit {
    pub from: Bytes,
    pub to: Bytes,
    pub proof: Bytes,
}

/// `GET /v1/audit/key`: the audit log's origin (its key name) and the
/// Ed25519 key that signs its checkpoints, in hex.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditKeyInfo {
    pub origin: String,
    pub key: String,
}

/// Most checkpoints in one [`AuditReport`]: the one seen before and the
/// one that does not extend it.
pub const MAX_REPORTED_CHECKPOINTS: usize = 2;

/// `POST /v1/audit/reports`: an auditor's evidence that the log's
/// checkpoints do not verify. `checkpoints` are signed notes as the
/// server served them (the older one first); `code` is the auditor's own
/// error code (`audit_shrunk`, `audit_inconsistent`, ...), for the record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditReport {
    pub checkpoints: Vec<String>,
    pub code: String,
}

/// The answer to an [`AuditReport`]: whether the evidence verified (a
/// checkpoint signed by this server's audit key that its log does not
/// contain). Either way the report is on record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditReportReceipt {
    pub verified: bool,
}

/// `GET /v1/audit/consistency` and `/v1/audit/inclusion`: the proof's
/// hashes (32 bytes each, base64), in RFC 9162 order.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditProof {
    pub proof: Vec<Bytes>,
}

/// `GET /v1/audit/leaves`: the leaf hashes (32 bytes each) of consecutive
/// entries from `start`, computed from the entries as stored. Outside
/// auditors get these, never the entries: the entries are salted, so a
/// leaf says nothing of who did what.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditLeaves {
    pub start: u64,
    pub leaves: Vec<Bytes>,
}

/// `GET /v1/audit/account`: the administrator's actions on the caller's
/// account from a position on, each proven in the newest checkpoint, and
/// that checkpoint's consistency with the one the device saw before.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccountAudit {
    /// The newest signed checkpoint (signed note).
    pub checkpoint: String,
    /// Consistency proof from the size the device gave (`since`).
    pub consistency: Vec<Bytes>,
    /// Entries up to the checkpoint's size, oldest first.
    pub entries: Vec<ProvenEntry>,
    /// More entries wait past the last one here.
    pub more: bool,
}

/// One audit entry with its inclusion proof in [`AccountAudit::checkpoint`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProvenEntry {
    pub index: u64,
    pub entry: Bytes,
    pub proof: Vec<Bytes>,
}

/// Ask for a challenge to sign with the device key.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ChallengeRequest {
    pub user: UserId,
    pub device: DeviceId,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ChallengeResponse {
    /// Random bytes; single use, short-lived.
    pub challenge: Bytes,
    pub expires_in_s: u64,
}

/// What a device signs to prove possession of its key: domain-separated so
/// that the signature is useful for nothing else.
pub fn auth_signed_content(domain: &str, device: &DeviceAddress, challenge: &[u8]) -> Vec<u8> {
    let mut out = b"valise-auth-v1\0".to_vec();
    out.extend_from_slice(domain.as_bytes());
    out.push(0);
    out.extend_from_slice(device.to_string().as_bytes());
    out.push(0);
    out.extend_from_slice(challenge);
    out
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TokenRequest {
    pub user: UserId,
    pub device: DeviceId,
    pub challenge: Bytes,
    /// Signature over [`auth_signed_content`].
    pub signature: Bytes,
}

#[derive(Clone, Serialize, Deserialize)]
pub struct TokenResponse {
    /// Bearer token bound to the device.
    pub token: String,
    pub expires_in_s: u64,
}

impl std::fmt::Debug for TokenResponse {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenResponse")
            .field("token", &"***")
            .field("expires_in_s", &self.expires_in_s)
            .finish()
    }
}

/// Restock this device's key packages.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyPackageUpload {
    pub one_time: Vec<Bytes>,
    #[serde(default)]
    pub last_resort: Option<Bytes>,
    /// Drop this device's unclaimed one-time packages first: they are
    /// replaced before they expire.
    #[serde(default)]
    pub replace: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct KeyPackageStock {
    /// One-time key packages still unclaimed.
    pub one_time: u64,
}

/// Claim one key package for each active device of a user.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClaimRequest {
    /// Devices not to claim for (those already in the conversation).
    #[serde(default)]
    pub exclude: Vec<DeviceId>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimedKeyPackage {
    pub device: DeviceId,
    pub key_package: Bytes,
    /// True when the one-time packages ran out and this is the last-resort one.
    pub last_resort: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ClaimResponse {
    pub user: UserId,
    pub key_packages: Vec<ClaimedKeyPackage>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceInfo {
    pub device: DeviceId,
    pub signature_key: Bytes,
    /// Milliseconds since the Unix epoch.
    pub enrolled_at_ms: i64,
    /// `approved`, `pending` or `revoked`, as the server has it (clients
    /// trust only the key directory's signatures).
    pub status: String,
}

/// An approved device of the same user approves a pending device: its
/// signature over `valise_directory::approval_message` for that device
/// enrolled as `number`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ApproveDevice {
    pub number: u64,
    pub signature: Bytes,
}

/// An approved device of the same user revokes a device (itself included):
/// its signature over `valise_directory::revocation_message` with `at`, the
/// number the next enrolled device would get.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RevokeDevice {
    pub at: u64,
    pub signature: Bytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceList {
    pub user: UserId,
    pub devices: Vec<DeviceInfo>,
}

/// Register a new conversation on its hub (this server) at epoch 0.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CreateConversation {
    pub id: ConversationId,
    /// `MlsMessage` carrying the signed GroupInfo of epoch 0.
    pub group_info: Bytes,
    /// The ratchet tree of epoch 0 (TLS bytes).
    pub ratchet_tree: Bytes,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ConversationState {
    pub id: ConversationId,
    pub epoch: u64,
    /// The members' devices as the MLS roster has them.
    pub members: Vec<DeviceAddress>,
}

/// A commit for the conversation's current epoch, and the Welcome for the
/// devices it adds.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubmitCommit {
    /// The epoch the commit was made in (the server's current one).
    pub epoch: u64,
    /// `MlsMessage` (PublicMessage) bytes.
    pub commit: Bytes,
    #[serde(default)]
    pub welcome: Option<Bytes>,
    /// `MlsMessage` carrying the committer's signed GroupInfo of the epoch
    /// the commit starts, with its external public key: what a member that
    /// lost track of the group rejoins from (required by the hub).
    #[serde(default)]
    pub group_info: Option<Bytes>,
}

/// The hub's latest GroupInfo of a conversation and its ratchet tree: what
/// a member rejoins from by external commit (resync).
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GroupInfoState {
    pub epoch: u64,
    /// `MlsMessage` (GroupInfo) bytes, signed by the member who made the epoch.
    pub group_info: Bytes,
    /// The epoch's ratchet tree (TLS bytes).
    pub ratchet_tree: Bytes,
}

/// The security desk the organisation named (`valised admin set
/// security-desk`), to which devices report their alerts; `None` while
/// there is none. Devices pin the first one they learn.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct SecurityDesk {
    pub security_desk: Option<UserId>,
}

/// `GET /v1/accreditation-authority`: the key (hex) the server names now.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AccreditationAuthority {
    pub accreditation_authority: Option<String>,
}

/// The attachment blob API (tus-style resumable uploads): its paths and
/// headers live here once, so that client and server cannot diverge.
pub mod blobs {
    use crate::id::BlobId;
    use serde::{Deserialize, Serialize};

    /// `POST`: create a blob of the declared length.
    pub const ROUTE: &str = "/v1/blobs";
    /// `PATCH`, `HEAD`, `GET` one blob (axum's path template).
    pub const ITEM_ROUTE: &str = "/v1/blobs/{id}";
    /// The blob's whole length, declared at creation.
    pub const UPLOAD_LENGTH: &str = "upload-length";
    /// Where a part starts (`PATCH`), or how much is durable (`HEAD`).
    pub const UPLOAD_OFFSET: &str = "upload-offset";
    /// The content type of a part.
    pub const PART_TYPE: &str = "application/offset+octet-stream";
    /// Largest part of one `PATCH`, and of one ranged `GET`.
    pub const MAX_PART_BYTES: usize = 8 * 1024 * 1024;

    /// The path of one blob.
    pub fn path(id: &BlobId) -> String {
        format!("{ROUTE}/{id}")
    }

    /// The answer to `POST /v1/blobs`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BlobCreated {
        pub blob: BlobId,
    }

    /// `POST`: name the blobs a letter about to be sent carries, so that
    /// the server keeps them (an unnamed blob is swept with unfinished
    /// uploads).
    pub const LINKS_ROUTE: &str = "/v1/blobs/links";

    /// The body of `POST /v1/blobs/links`: the blobs of one letter, at
    /// most [`crate::blob::MAX_ATTACHMENTS`].
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct LinkBlobs {
        pub blobs: Vec<BlobId>,
    }

    /// The answer to `POST /v1/blobs/links`: the named blobs the server
    /// did not link (gone, never the caller's, or not complete); the
    /// others are linked.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct BlobsLinked {
        pub missing: Vec<BlobId>,
    }

    /// A malformed blob header.
    #[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
    #[error("header {0} is not valid")]
    pub struct HeaderError(pub &'static str);

    /// Parses `Upload-Length` or `Upload-Offset`: decimal digits only (no
    /// sign, no spaces), at most 19 of them.
    pub fn parse_count(name: &'static str, value: &[u8]) -> Result<u64, HeaderError> {
        if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
            return Err(HeaderError(name));
        }
        std::str::from_utf8(value)
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(HeaderError(name))
    }

    /// Parses `Range: bytes=FIRST-LAST` (one range, both ends given,
    /// inclusive); returns the start and the length.
    pub fn parse_range(value: &[u8]) -> Result<(u64, u64), HeaderError> {
        let bad = HeaderError("range");
        let rest = value.strip_prefix(b"bytes=").ok_or(bad.clone())?;
        let dash = rest.iter().position(|&b| b == b'-').ok_or(bad.clone())?;
        let first = parse_count("range", &rest[..dash]).map_err(|_| bad.clone())?;
        let last = parse_count("range", &rest[dash + 1..]).map_err(|_| bad.clone())?;
        if last < first {
            return Err(bad);
        }
        Ok((first, last - first + 1))
    }

    /// The `Range` header asking for `len` bytes from `start` (`len` > 0).
    pub fn range(start: u64, len: u64) -> String {
        format!("bytes={start}-{}", start + len.max(1) - 1)
    }

    #[cfg(test)]
    mod tests {
        use super::*;
        use proptest::prelude::*;

        #[test]
        fn headers_parse_strictly() {
            assert_eq!(parse_count("x", b"0"), Ok(0));
            assert_eq!(parse_count("x", b"8388608"), Ok(8 << 20));
            for bad in [
                &b""[..],
                b"+1",
                b"-1",
                b" 1",
                b"1 ",
                b"0x10",
                b"99999999999999999999",
            ] {
                assert!(parse_count("x", bad).is_err(), "{bad:?}");
            }
            assert_eq!(parse_range(b"bytes=0-9"), Ok((0, 10)));
            assert_eq!(parse_range(range(100, 5).as_bytes()), Ok((100, 5)));
            for bad in [
                &b"bytes=5-4"[..],
                b"bytes=-4",
                b"bytes=1-",
                b"bytes=0-1,3-4",
                b"items=0-1",
            ] {
                assert!(parse_range(bad).is_err(), "{bad:?}");
            }
        }

        proptest! {
            #[test]
            fn parsers_never_panic(b in proptest::collection::vec(any::<u8>(), 0..40)) {
                let _ = parse_count("x", &b);
                let _ = parse_range(&b);
            }

            #[test]
            fn ranges_round_trip(start in 0u64..(1 << 40), len in 1u64..(1 << 30)) {
                prop_assert_eq!(parse_range(range(start, len).as_bytes()), Ok((start, len)));
            }
        }
    }
}
