//! Errors of the client engine, each with a stable code for scripts.

use valise_proto::{ErrorCode, Problem};

/// What went wrong in a client operation. Messages never carry letter
/// content, keys or the passphrase.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("this home is not enrolled yet: run `valise enroll` first")]
    NotEnrolled,
    #[error("this home is already enrolled as {0}")]
    AlreadyEnrolled(String),
    #[error("wrong passphrase, or the home database is damaged")]
    WrongPassphrase,
    #[error("home directory error: {0}")]
    Home(String),
    #[error("local database error: {0}")]
    Database(#[from] rusqlite::Error),
    #[error("cannot reach the server: {0}")]
    Network(String),
    #[error("the server refused: {0}")]
    Server(Problem),
    #[error("the server answered something unexpected: {0}")]
    Protocol(String),
    #[error("MLS error: {0}")]
    Mls(String),
    #[error("key directory: {0}")]
    Directory(String),
    #[error("{0}")]
    NotInDirectory(String),
    #[error("{0}")]
    Invalid(String),
    #[error("no such {kind}: {id}")]
    NotFound { kind: &'static str, id: String },
    #[error("{0} has no device that can be added (no key package)")]
    NoDevices(String),
    #[error("the conversation changed too often while committing; try again")]
    Contention,
    #[error("letter stored but not yet accepted by the server ({0}); it is sent on the next sync")]
    Queued(String),
    /// Written, but waiting unsealed in the outbox: why, and until when.
    #[error("the letter is kept in the outbox and not sent: {0}")]
    Held(String),
    #[error(
        "conversation {0} is out of step with the server: nothing changes there until it is \
         whole again (see `valise conversation show {0}`)"
    )]
    Diverged(String),
    #[error(
        "{0}'s identity changed and nobody verified the new one: compare safety codes first \
         (`valise verify {0}`, then `valise verify {0} --code CODE`)"
    )]
    IdentityChanged(String),
    #[error(
        "this device is pending: another device of yours must approve it first (`valise devices \
         approve CODE` there, with the code `valise devices` shows here)"
    )]
    DevicePending,
    /// What this device had received already, delivered again (a replay,
    /// or a re-read after the server was restored).
    #[error("replayed: {0}")]
    Replayed(String),
    /// Evidence that another copy of this device is in use.
    #[error("{0}: another copy of this device is in use (a stolen copy of its home?)")]
    Cloned(String),
    /// A handling marking forbids it (a ceiling, an accreditation, a
    /// forwarding rule, an export directory); `code` says which.
    #[error("{detail}")]
    Handling { code: &'static str, detail: String },
    /// A marked letter refused: a device it would reach is not accredited.
    #[error(
        "not sent: device {device} {why}, so it is not accredited for {marking} (see `valise \
         alerts`)"
    )]
    Unaccredited {
        device: String,
        marking: &'static str,
        why: &'static str,
    },
    /// The accreditation authority the server named is not the one the
    /// user was told to expect.
    #[error("the server's accreditation authority key has fingerprint {0}, not the one given")]
    AuthorityMismatch(String),
    /// A server's audit log failed verification (`valise audit-log`).
    #[error("audit log: {detail}")]
    AuditLog { code: &'static str, detail: String },
    /// An attachment failed its checks: nothing was written.
    #[error("{0}")]
    Attachment(String),
    /// The server did not keep blobs this device had just uploaded whole
    /// (`missing` to the link): the letter waits, as for a full server,
    /// and is tried again on the next sync. Never a refusal: that would
    /// tell the user the letter is not sent while its draft still goes.
    #[error("the server does not keep the attachments' blobs it was sent ({0} of them)")]
    BlobsNotKept(usize),
}

impl ClientError {
    /// Stable, snake_case code for `--json` output and scripts.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotEnrolled => "not_enrolled",
            Self::AlreadyEnrolled(_) => "already_enrolled",
            Self::WrongPassphrase => "wrong_passphrase",
            Self::Home(_) => "home",
            Self::Database(_) => "database",
            Self::Network(_) => "network",
            Self::Server(p) => p.code.as_str(),
            Self::Protocol(_) => "protocol",
            Self::Mls(_) => "mls",
            Self::Directory(_) => "directory",
            Self::NotInDirectory(_) => "not_in_directory",
            Self::Invalid(_) => "invalid",
            Self::NotFound { .. } => "not_found",
            Self::NoDevices(_) => "no_devices",
            Self::Contention => "contention",
            Self::Queued(_) => "queued",
            Self::Held(_) => "held",
            Self::Diverged(_) => "diverged",
            Self::IdentityChanged(_) => "identity_changed",
            Self::DevicePending => "device_pending",
            Self::Cloned(_) => "device_cloned",
            Self::Replayed(_) => "replayed",
            Self::AuditLog { code, .. } | Self::Handling { code, .. } => code,
            Self::Unaccredited { .. } => "unaccredited",
            Self::AuthorityMismatch(_) => "authority_mismatch",
            Self::Attachment(_) => "attachment_refused",
            Self::BlobsNotKept(_) => "blobs_not_kept",
        }
    }

    /// True when trying again later may succeed (network, overload, a
    /// server failure) — as opposed to a refusal that will not change.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::Network(_) | Self::BlobsNotKept(_) => true,
            Self::Server(p) => matches!(
                p.code,
                ErrorCode::RateLimited
                    | ErrorCode::Internal
                    | ErrorCode::StorageFull
                    | ErrorCode::Unknown
            ),
            _ => false,
        }
    }

    /// True for a server answer with this code.
    pub fn is_server(&self, code: ErrorCode) -> bool {
        matches!(self, Self::Server(p) if p.code == code)
    }

    pub(crate) fn mls(e: impl std::fmt::Debug) -> Self {
        // openmls errors are enums without secrets; Debug names the variant.
        Self::Mls(format!("{e:?}"))
    }
}

impl From<valise_proto::IdError> for ClientError {
    fn from(e: valise_proto::IdError) -> Self {
        Self::Invalid(e.to_string())
    }
}

impl From<valise_proto::LetterError> for ClientError {
    fn from(e: valise_proto::LetterError) -> Self {
        Self::Invalid(e.to_string())
    }
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;
