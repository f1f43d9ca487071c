//! Alerts: what a device refused or noticed that its user must see.
//!
//! A server in an intruder's hands may hand a device forged, replayed or
//! moved messages, roll a group back or slip in a device; the device refuses
//! (nothing is shown, nothing is taken) and records an alert with the bytes
//! as evidence, so that the intrusion is *seen*.

pub use crate::home::alerts::Alert;

/// Kinds of alert; the snake_case name is stable for scripts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AlertKind {
    /// The server delivered something that failed verification or replayed
    /// what was already received.
    RefusedMessage,
    /// This device's one-time key packages ran out: others may have added it
    /// with its last-resort package until it restocked.
    KeyPackagesExhausted,
    /// A key the server offered or a member brought in is not in the key
    /// directory, or not approved by its user, or revoked.
    KeyNotInDirectory,
    /// A device or key appeared in this user's directory entry.
    NewDevice,
    /// The server showed a directory root this device refuses (rollback,
    /// split view, bad signature), or a member holds another root for an
    /// epoch this device knows.
    DirectoryConflict,
    /// A sender's letters arrived with numbers missing: the server withheld some.
    LettersWithheld,
    /// Two different commits arrived for one epoch of a conversation: the
    /// server accepted both, so members may follow different histories.
    Fork,
    /// The server fanned a letter out to more or fewer devices than the
    /// conversation's MLS roster holds (a ghost member, or members cut off).
    RosterMismatch,
    /// This device had lost track of a conversation and rejoined it.
    Rejoined,
    /// The server offered a conversation state this device refuses to take:
    /// older than what it shared, or not reached by commits it verified.
    Rollback,
    /// A peer's identity key changed (an administrator's reset): nothing is
    /// written to them until someone verifies the new one.
    IdentityChanged,
    /// This device was revoked (by its user or the administrator).
    DeviceRevoked,
    /// Another copy of this device is in use: it committed, or rejoined, as
    /// this device (D3). Revoke the device and enrol anew.
    DeviceCloned,
    /// The server did not know this device's inbox position: it was
    /// restored from an older copy of its data (a backup). The device read
    /// its inbox again; letters sent since that copy may be lost to others.
    ServerRestored,
    /// The administrator acted on this account (an invite, a revocation, an
    /// identity reset): the audit entry, proven in a checkpoint signed by
    /// the audit key pinned at enrolment, is the evidence.
    AdminAction,
    /// The server's audit log, as shown to this device, fails: a checkpoint
    /// not signed by the pinned key, one that does not extend the last one
    /// seen (a rollback or a fork), or an entry not in it.
    AuditConflict,
    /// The server names another security desk than the one this device
    /// pinned (or none): reports keep going to the pinned desk until the
    /// user accepts the new one (`valise desk accept`).
    SecurityDeskChanged,
    /// A marked letter was not sent: a device of the conversation's
    /// encrypting epoch is not accredited for its marking (issue 11).
    UnaccreditedRecipient,
    /// A marked letter reached a conversation where some device (this
    /// one, or another) is not accredited for its marking, or above the
    /// conversation's ceiling: this device did not render it if it is not
    /// accredited itself or the letter is above the ceiling.
    Spillage,
    /// The server names another accreditation authority key than the one
    /// this device pinned: it keeps verifying under the pinned key.
    AccreditationAuthorityChanged,
    /// An attachment's blob, as the server served it, failed its checks (a
    /// chunk altered, reordered or missing, the end cut, another blob, the
    /// digest): nothing was saved.
    AttachmentRefused,
    /// A member changed a conversation's ceiling (its policy hash), or sent
    /// a policy the group does not hold: the ceiling held stays, and the
    /// conversation refuses marked letters.
    CeilingChanged,
    /// A member brought in a device not accredited for the conversation's
    /// ceiling: marked letters are refused there until it is removed.
    UnaccreditedMember,
    /// A letter whose marking restricts where it may be written was saved
    /// out of the home (into an approved export directory): every such
    /// export is reported.
    Export,
    /// A letter that waited to go (its files' upload, after its sender
    /// was told it would go on a later sync) was refused for good when
    /// tried again, and dropped: it was not sent.
    LetterNotSent,
}

impl AlertKind {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::RefusedMessage => "refused_message",
            Self::KeyPackagesExhausted => "key_packages_exhausted",
            Self::KeyNotInDirectory => "key_not_in_directory",
            Self::NewDevice => "new_device",
            Self::DirectoryConflict => "directory_conflict",
            Self::LettersWithheld => "letters_withheld",
            Self::Fork => "fork",
            Self::RosterMismatch => "roster_mismatch",
            Self::Rejoined => "rejoined",
            Self::Rollback => "rollback",
            Self::IdentityChanged => "identity_changed",
            Self::DeviceRevoked => "device_revoked",
            Self::DeviceCloned => "device_cloned",
            Self::ServerRestored => "server_restored",
            Self::AdminAction => "admin_action",
            Self::AuditConflict => "audit_conflict",
            Self::SecurityDeskChanged => "security_desk_changed",
            Self::UnaccreditedRecipient => "unaccredited_recipient",
            Self::Spillage => "spillage",
            Self::AccreditationAuthorityChanged => "accreditation_authority_changed",
            Self::AttachmentRefused => "attachment_refused",
            Self::CeilingChanged => "ceiling_changed",
            Self::UnaccreditedMember => "unaccredited_member",
            Self::Export => "export",
            Self::LetterNotSent => "letter_not_sent",
        }
    }
}
