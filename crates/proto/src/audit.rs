//! One entry of the server's audit log (issue 10, I7): who did what, to
//! whom, when and from where. Never letter content.
//!
//! The encoding is canonical compact JSON in the field order below, so that
//! an entry has exactly one byte string (its leaf in [`crate::tlog`]) and a
//! SIEM can still read it:
//!
//! ```text
//! {"index":7,"time_ms":1764489600000,"actor":{"device":"alice@mfa.example/0a1b…"},
//!  "action":"device_revoked","subject":{"device":"alice@mfa.example/9f8e…"},
//!  "from":"192.0.2.7","details":{"count":1},"salt":"5c0e…"}
//! ```
//!
//! The random `salt` makes a leaf hash say nothing of its entry: outside
//! auditors get only the hashes (who did what, when and from where is the
//! organisation's own business), and nobody can confirm a guess at an
//! entry by hashing it.
//! [`Entry::decode`] accepts only bytes that [`Entry::encode`] gives back
//! unchanged (no spaces, no reordered or unknown fields, no duplicates).

use crate::{ConversationId, DeviceAddress, UserId};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::net::IpAddr;

/// Largest encoded entry the server writes and an auditor reads.
pub const MAX_ENTRY_BYTES: usize = 4096;

/// Who acted.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Actor {
    /// An authenticated device.
    Device(DeviceAddress),
    /// The operator, through `valised admin` on the server's machine.
    Admin,
    /// The server itself (start, stop, its own housekeeping).
    Server,
    /// Someone known only by their network address (a failed login, an
    /// enrolment before the device exists).
    Anonymous,
}

/// Whom or what the action was about.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum Subject {
    User(UserId),
    Device(DeviceAddress),
    Conversation(ConversationId),
}

/// What happened. Names are stable on the wire; new ones are appended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    InviteIssued,
    Enrolment,
    DeviceApproved,
    DeviceRevoked,
    IdentityReset,
    AuthSucceeded,
    AuthFailed,
    KeyPackagesClaimed,
    ConversationCreated,
    CommitAccepted,
    CommitRefused,
    /// Inbox reads of one device, summed over one checkpoint interval.
    InboxRead,
    AdminCommand,
    ServerStarted,
    ServerStopped,
    /// A setting the administrator changed while the server runs (the
    /// security desk).
    ConfigurationChanged,
    /// An auditor reported a checkpoint that fails verification
    /// (`POST /v1/audit/reports`), with the server's verdict on its evidence.
    AuditReported,
    /// A server-side rule raised an alert (the server's `rules` module);
    /// the entry is the alert, so deleting one is as visible as any edit.
    AlertRaised,
    /// The administrator published an accreditation attestation in a
    /// user's directory entry (`valised admin publish-attestation`).
    AttestationPublished,
}

impl Action {
    /// The snake_case name, as on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::InviteIssued => "invite_issued",
            Self::Enrolment => "enrolment",
            Self::DeviceApproved => "device_approved",
            Self::DeviceRevoked => "device_revoked",
            Self::IdentityReset => "identity_reset",
            Self::AuthSucceeded => "auth_succeeded",
            Self::AuthFailed => "auth_failed",
            Self::KeyPackagesClaimed => "key_packages_claimed",
            Self::ConversationCreated => "conversation_created",
            Self::CommitAccepted => "commit_accepted",
            Self::CommitRefused => "commit_refused",
            Self::InboxRead => "inbox_read",
            Self::AdminCommand => "admin_command",
            Self::ServerStarted => "server_started",
            Self::ServerStopped => "server_stopped",
            Self::ConfigurationChanged => "configuration_changed",
            Self::AuditReported => "audit_reported",
            Self::AlertRaised => "alert_raised",
            Self::AttestationPublished => "attestation_published",
        }
    }
}

/// A detail value: a count or a short text (an id, an error code, a
/// command name). Never content.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Detail {
    Count(u64),
    Text(String),
}

/// One audit entry, as appended and as hashed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entry {
    /// Position in the log, from 0; an entry names its own place so that
    /// one moved elsewhere does not hash the same.
    pub index: u64,
    pub time_ms: i64,
    pub actor: Actor,
    pub action: Action,
    pub subject: Option<Subject>,
    /// The client's network address, when there was a client.
    pub from: Option<IpAddr>,
    pub details: BTreeMap<String, Detail>,
    pub salt: Salt,
}

/// 16 random bytes in an entry, spelled as 32 lowercase hex digits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Salt(pub [u8; 16]);

impl std::fmt::Debug for Salt {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Salt({})", hex::encode(self.0))
    }
}

impl Serialize for Salt {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(self.0))
    }
}

impl<'de> Deserialize<'de> for Salt {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        let mut raw = [0u8; 16];
        // Canonical: `Entry::decode` re-encodes, so upper case is refused there.
        hex::decode_to_slice(&text, &mut raw)
            .map_err(|_| serde::de::Error::custom("salt: expected 32 hex digits"))?;
        Ok(Self(raw))
    }
}

/// Why bytes are not an audit entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum EntryError {
    #[error("not an audit entry: {0}")]
    Malformed(String),
    #[error("audit entry is not in canonical form")]
    NotCanonical,
    #[error("audit entry of {0} bytes is larger than {MAX_ENTRY_BYTES}")]
    TooLarge(usize),
}

impl EntryError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Malformed(_) => "audit_entry_malformed",
            Self::NotCanonical => "audit_entry_not_canonical",
            Self::TooLarge(_) => "audit_entry_too_large",
        }
    }
}

impl Entry {
    /// The user the subject belongs to (a user, or a device's user).
    pub fn subject_user(&self) -> Option<&UserId> {
        match &self.subject {
            Some(Subject::User(u)) => Some(u),
            Some(Subject::Device(d)) => Some(&d.user),
            _ => None,
        }
    }

    /// The account this entry must be shown to, if it is an action taken
    /// on an account over its owner's head: an invite issued or a device
    /// revoked or an accreditation attestation published by the
    /// administrator, or an identity reset (the new identity's device
    /// enrols with an administrator's reset invite).
    pub fn shown_to(&self) -> Option<&UserId> {
        let user = self.subject_user()?;
        let by_admin = self.actor == Actor::Admin;
        match self.action {
            Action::InviteIssued | Action::DeviceRevoked | Action::AttestationPublished
                if by_admin =>
            {
                Some(user)
            }
            Action::IdentityReset => Some(user),
            _ => None,
        }
    }

    /// The canonical bytes (the leaf of the log).
    pub fn encode(&self) -> Vec<u8> {
        // Serialising plain structs, enums, strings and integers cannot fail.
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Parses canonical bytes, refusing any other spelling of an entry.
    pub fn decode(bytes: &[u8]) -> Result<Self, EntryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(EntryError::TooLarge(bytes.len()));
        }
        let entry: Self =
            serde_json::from_slice(bytes).map_err(|e| EntryError::Malformed(e.to_string()))?;
        if entry.encode() != bytes {
            return Err(EntryError::NotCanonical);
        }
        Ok(entry)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn revocation() -> Entry {
        let alice = DeviceAddress::parse(&format!("alice@mfa.example/{}", "0a".repeat(8)));
        Entry {
            index: 7,
            time_ms: 1_764_489_600_000,
            actor: Actor::Admin,
            action: Action::DeviceRevoked,
            subject: Some(Subject::Device(alice.unwrap())),
            from: None,
            details: BTreeMap::from([("count".into(), Detail::Count(1))]),
            salt: Salt([0x5c; 16]),
        }
    }

    #[test]
    fn entries_round_trip_canonically() {
        let e = revocation();
        let bytes = e.encode();
        assert_eq!(Entry::decode(&bytes).unwrap(), e);
        let text = String::from_utf8(bytes.clone()).unwrap();
        assert!(text.starts_with(r#"{"index":7,"time_ms":1764489600000,"actor":"admin","action":"device_revoked","subject":{"device":"alice@mfa.example/"#), "{text}");
        // The same entry spelled otherwise is refused.
        let spaced = text.replace(",\"time_ms\"", ", \"time_ms\"");
        assert_eq!(
            Entry::decode(spaced.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        assert!(
            text.ends_with(&format!(r#","salt":"{}"}}"#, "5c".repeat(16))),
            "{text}"
        );
        let upper = text.replace(&"5c".repeat(16), &"5C".repeat(16));
        assert_eq!(
            Entry::decode(upper.as_bytes()),
            Err(EntryError::NotCanonical)
        );
        let extra = text.replacen('{', r#"{"x":1,"#, 1);
        assert_eq!(
            Entry::decode(extra.as_bytes()).unwrap_err().code(),
            "audit_entry_malformed"
        );
        for a in [
            Action::InviteIssued,
            Action::InboxRead,
            Action::ServerStopped,
            Action::ConfigurationChanged,
        ] {
            assert_eq!(serde_json::to_value(a).unwrap(), a.as_str());
        }
    }
}
