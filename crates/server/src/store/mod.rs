//! What the server keeps, behind one trait so that SQLite (default) and a
//! shared database later implement the same contract.
//!
//! Methods are synchronous: async handlers call them through
//! `tokio::task::spawn_blocking`. Every method that writes does so in one
//! transaction and returns only after it committed, so an answer to a client
//! always means "durable".
//!
//! Delivery is a log ([`Store::write_log`], [`Store::inbox`]): one row per
//! accepted message, read by each device through its memberships and one
//! cursor; see `migrations/0005_log.sql` and docs/PROTOCOL.md.

#[cfg(test)]
pub mod conformance;
pub mod sqlite;

use valise_directory::{Approval, Identity, Revocation};
use valise_proto::tlog::{Hash, Subtree};
use valise_proto::wire::EntryKind;
use valise_proto::{BlobId, ConversationId, DeviceAddress, DeviceId, MessageId, UserId};

pub use sqlite::SqliteStore;

/// Bytes of letters one account's devices may keep waiting in the log
/// before their letters are refused, in MiB (`valised run --account-quota-mib`).
pub const DEFAULT_ACCOUNT_QUOTA_MIB: u64 = 1024;

/// Why a store operation did not happen. Nothing was written when one is returned.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("the conversation is at epoch {current}")]
    StaleEpoch { current: u64 },
    #[error("already exists")]
    AlreadyExists,
    #[error("not found")]
    NotFound,
    #[error("the device is not a member of the conversation")]
    NotMember,
    #[error("the invite code is unknown, used or expired")]
    InvalidInvite,
    /// A change to a user's devices no longer fits what they are now (a
    /// concurrent change came first).
    #[error("{0}")]
    Changed(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// Written by a version of Valise this one cannot carry over.
    #[error("{0}")]
    Incompatible(String),
    /// The disk (or the database's size limit) is full.
    #[error("storage is full")]
    Full,
    /// The sender's account keeps as many bytes as its quota allows.
    #[error("the account's storage quota is used up")]
    QuotaExceeded,
    /// A log position this store never handed out (a server restored
    /// from an older copy of its data, or a forged cursor).
    #[error("unknown log position")]
    UnknownPosition,
    #[error("database error: {0}")]
    Sqlite(String),
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        match e.sqlite_error_code() {
            Some(rusqlite::ErrorCode::DiskFull) => StoreError::Full,
            _ => StoreError::Sqlite(e.to_string()),
        }
    }
}

/// A checked key package to store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewKeyPackage {
    /// `KeyPackage` TLS bytes.
    pub bytes: Vec<u8>,
    /// Seconds since the Unix epoch from which nobody may use it.
    pub not_after: u64,
}

/// A device enrolling with an invite.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub code_hash: [u8; 32],
    pub device: DeviceAddress,
    pub signature_key: Vec<u8>,
    /// Validated one-time key packages.
    pub key_packages: Vec<NewKeyPackage>,
    pub last_resort: NewKeyPackage,
    pub now_ms: i64,
}

/// What an enrolment made of the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enrolled {
    /// Its position in the key directory's queue ([`Store::directory_pending`]).
    pub seq: u64,
    pub number: u64,
    /// The identity generation it enrolled under.
    pub generation: u32,
    /// `Approved` if it founded the identity, `Pending` otherwise.
    pub status: Status,
}

/// A device's standing as the server has it: what the signatures in the
/// user's directory entry say, kept in step with every change (clients
/// check the signatures themselves).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Status {
    /// Founded the identity or approved by an approved device.
    Approved,
    /// Enrolled, waiting for an approval.
    Pending,
    /// Revoked by its user, the administrator, or an identity reset.
    Revoked,
}

impl Status {
    /// The stored and shown name: `approved`, `pending` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved => "approved",
            Self::Pending => "pending",
            Self::Revoked => "revoked",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "approved" => Some(Self::Approved),
            "pending" => Some(Self::Pending),
            "revoked" => Some(Self::Revoked),
            _ => None,
        }
    }
}

/// An enrolled device as stored: what its directory entry publishes, and
/// the server's view of its status.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device: DeviceId,
    pub signature_key: Vec<u8>,
    pub enrolled_at_ms: i64,
    /// Order of enrolment among the user's devices, from 0.
    pub number: u64,
    /// The identity generation it enrolled under.
    pub generation: u32,
    pub status: Status,
    pub approval: Option<Approval>,
    pub revocation: Option<Revocation>,
    /// When it was revoked (milliseconds since the Unix epoch).
    pub revoked_at_ms: Option<i64>,
}

/// A user, their identity and every device they ever enrolled.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: UserId,
    pub identity: Identity,
    /// By enrolment number.
    pub devices: Vec<DeviceRecord>,
    /// Accreditation attestations published for the user (issue 11), as
    /// signed; checked by clients, not by the directory.
    pub attestations: Vec<Vec<u8>>,
}

impl UserRecord {
    pub fn device(&self, device: &DeviceId) -> Option<&DeviceRecord> {
        self.devices.iter().find(|d| d.device == *device)
    }
}

/// An approval checked against the user's identity, to store.
#[derive(Debug, Clone)]
pub struct NewApproval {
    /// The pending device approved...
    pub device: DeviceAddress,
    /// ...under the number its approval signs.
    pub number: u64,
    /// The approving (approved) device of the same user.
    pub by: DeviceId,
    pub signature: Vec<u8>,
    pub now_ms: i64,
}

/// A revocation to store.
#[derive(Debug, Clone)]
pub struct NewRevocation {
    pub device: DeviceAddress,
    /// The number the next device would get, as signed; `None` for an
    /// unsigned revocation, which takes the current one.
    pub at: Option<u64>,
    /// The revoking (approved) device of the same user and its signature;
    /// `None` for the administrator.
    pub by: Option<(DeviceId, Vec<u8>)>,
    pub now_ms: i64,
}

/// One key package handed out by a claim.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimedPackage {
    pub device: DeviceId,
    pub bytes: Vec<u8>,
    pub last_resort: bool,
}

/// A conversation the hub follows, as stored.
#[derive(Debug, Clone)]
pub struct ConversationRecord {
    pub id: ConversationId,
    pub epoch: u64,
    pub ciphersuite: u16,
    /// The serialised public group state ([`valise_mls::PublicState::state`]).
    pub state: Vec<u8>,
    pub roster: Vec<DeviceAddress>,
    /// The latest signed GroupInfo (`MlsMessage` bytes; empty: none yet).
    pub group_info: Vec<u8>,
}

/// A new conversation at epoch 0.
#[derive(Debug, Clone)]
pub struct NewConversation {
    pub record: ConversationRecord,
    pub created_by: DeviceAddress,
    pub now_ms: i64,
}

/// The Welcome a commit carries and who it is for.
#[derive(Debug, Clone)]
pub struct WelcomeDelivery {
    pub message: Vec<u8>,
    /// The ratchet tree (TLS bytes) of the epoch the joiners enter.
    pub ratchet_tree: Vec<u8>,
    pub joiners: Vec<DeviceAddress>,
}

/// An accepted commit, to be applied with compare-and-set on the epoch.
#[derive(Debug, Clone)]
pub struct AppliedCommit {
    pub conversation: ConversationId,
    /// The epoch the commit was made in; the store refuses if it moved.
    pub expected_epoch: u64,
    pub new_epoch: u64,
    pub new_state: Vec<u8>,
    pub new_roster: Vec<DeviceAddress>,
    /// The committer's signed GroupInfo of the new epoch.
    pub new_group_info: Vec<u8>,
    pub sender: DeviceAddress,
    pub commit: Vec<u8>,
    pub welcome: Option<WelcomeDelivery>,
    pub now_ms: i64,
}

/// An application message to store once and fan out.
#[derive(Debug, Clone)]
pub struct NewMessage {
    pub conversation: ConversationId,
    pub sender: DeviceAddress,
    pub client_msg_id: MessageId,
    /// The epoch the PrivateMessage was encrypted in.
    pub epoch: u64,
    pub bytes: Vec<u8>,
    pub now_ms: i64,
}

/// A position in the log: everything up to row `seq`, whose chain value
/// is `chain`. What a device's cursor holds, opaque to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    pub seq: u64,
    pub chain: [u8; 16],
}

impl Position {
    /// Before the first row.
    pub const ORIGIN: Self = Self {
        seq: 0,
        chain: [0; 16],
    };

    /// The cursor's bytes: `seq` (big-endian) then `chain`.
    pub fn to_bytes(self) -> Vec<u8> {
        let mut out = self.seq.to_be_bytes().to_vec();
        out.extend_from_slice(&self.chain);
        out
    }

    /// `None` unless exactly what [`Position::to_bytes`] makes.
    pub fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let (seq, chain) = bytes.split_at_checked(8)?;
        Some(Self {
            seq: u64::from_be_bytes(seq.try_into().ok()?),
            chain: chain.try_into().ok()?,
        })
    }
}

/// One write to the delivery log. The writer applies a batch of them in
/// one transaction, in order.
#[derive(Debug, Clone)]
pub enum LogWrite {
    Create(NewConversation),
    Commit(AppliedCommit),
    /// One request's letters, in its order: a letter not accepted skips
    /// the later ones of its conversation ([`LetterOutcome::Skipped`]).
    Letters(Vec<NewMessage>),
    /// The device has processed everything up to `at`.
    Ack {
        device: DeviceAddress,
        at: Position,
    },
}

/// What became of one [`LogWrite`], in the batch's order.
#[derive(Debug)]
pub enum LogWritten {
    Created(Result<(), StoreError>),
    Committed(Result<(), StoreError>),
    Letters(Vec<LetterOutcome>),
    Acked(Result<(), StoreError>),
}

/// What became of one letter.
#[derive(Debug)]
pub enum LetterOutcome {
    /// Stored at log position `seq` for `recipients` devices.
    Accepted { seq: u64, recipients: u32 },
    /// This sender's client message id was accepted before; the
    /// conversation's fan-out and epoch now.
    Duplicate { recipients: u32, epoch: u64 },
    /// Refused for its own reasons (stale epoch, not a member, quota).
    Refused(StoreError),
    /// An earlier letter of its conversation in the same request was not
    /// accepted.
    Skipped,
}

/// A batch written, and the devices whose inbox grew (to wake up).
#[derive(Debug)]
pub struct LogBatch {
    pub written: Vec<LogWritten>,
    pub wake: Vec<DeviceAddress>,
}

/// One inbox entry, as it goes on the wire.
pub type StoredEntry = valise_proto::wire::Entry;

/// A page of a device's inbox.
#[derive(Debug, Clone)]
pub struct InboxRead {
    pub entries: Vec<StoredEntry>,
    /// More entries follow.
    pub more: bool,
    /// Where the next read starts once these are processed.
    pub next: Position,
}

/// The storage contract of the server.
pub trait Store: Send + Sync + 'static {
    /// Records an invite (only the hash of its code). A `reset` invite
    /// founds a new identity generation for the user.
    fn create_invite(
        &self,
        code_hash: [u8; 32],
        user: &UserId,
        now_ms: i64,
        expires_at_ms: i64,
        reset: bool,
    ) -> Result<(), StoreError>;

    /// Whether an invite is usable by `user` now (`InvalidInvite` if not),
    /// without spending it; true for a reset invite.
    fn check_invite(
        &self,
        code_hash: &[u8; 32],
        user: &UserId,
        now_ms: i64,
    ) -> Result<bool, StoreError>;

    /// Consumes the invite and creates the device (and user) in one
    /// transaction. `InvalidInvite` if the invite does not fit;
    /// `AlreadyExists` if the device id is taken. The device founds the
    /// user's identity if there is none yet, or if the invite is a reset
    /// one (then every older device is revoked, its tokens and key packages
    /// deleted); otherwise it is pending. The user is queued for the key
    /// directory's next epoch in the same transaction.
    fn enroll(&self, e: &Enrollment) -> Result<Enrolled, StoreError>;

    /// Stores an approval of a pending device (approved from then on) and
    /// queues the user for the directory; returns the queue position.
    /// `Changed` unless the device is still pending under that number and
    /// the approver still approved.
    fn approve_device(&self, a: &NewApproval) -> Result<u64, StoreError>;

    /// Revokes a device, deletes its tokens and key packages, and queues the
    /// user for the directory; returns the queue position. `NotFound` for
    /// an unknown device; `Changed` if it is revoked already, if `at` is not
    /// the next number any more, or if the revoker is not approved.
    fn revoke_device(&self, r: &NewRevocation) -> Result<u64, StoreError>;

    /// How many devices are revoked: it only grows, so the running server
    /// re-reads [`Store::revoked_devices`] only when it changed.
    fn revoked_count(&self) -> Result<u64, StoreError>;

    /// Every revoked device.
    fn revoked_devices(&self) -> Result<Vec<DeviceAddress>, StoreError>;

    /// Queues `user` for the key directory's next epoch (their device list
    /// changed); returns the queue position, which increases strictly.
    fn mark_directory_pending(&self, user: &UserId, now_ms: i64) -> Result<u64, StoreError>;

    /// The users queued for the directory, and the highest queue position
    /// among them (0 if none).
    fn directory_pending(&self) -> Result<(Vec<UserId>, u64), StoreError>;

    /// Removes the queue entries up to `up_to`, once they are published.
    fn clear_directory_pending(&self, up_to: u64) -> Result<(), StoreError>;

    /// A device as stored, if enrolled (whatever its status).
    fn device(&self, device: &DeviceAddress) -> Result<Option<DeviceRecord>, StoreError>;

    /// Stores a token hash bound to a device.
    fn create_token(
        &self,
        token_hash: [u8; 32],
        device: &DeviceAddress,
        expires_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// The device a live token belongs to, and when the token expires.
    fn token_device(
        &self,
        token_hash: &[u8; 32],
        now_ms: i64,
    ) -> Result<Option<(DeviceAddress, i64)>, StoreError>;

    /// Adds one-time key packages (after dropping the unclaimed ones when
    /// `replace`), replaces the last-resort one if given; returns the
    /// one-time stock.
    fn add_key_packages(
        &self,
        device: &DeviceAddress,
        one_time: &[NewKeyPackage],
        last_resort: Option<&NewKeyPackage>,
        replace: bool,
    ) -> Result<u64, StoreError>;

    /// Takes one key package per approved device of `user` (except
    /// `exclude` and the caller): a one-time one (deleted) or else the
    /// last-resort one (kept), never one that expires before `valid_at`
    /// (expired one-time packages are deleted). `NotFound` for an unknown
    /// user.
    fn claim_key_packages(
        &self,
        user: &UserId,
        exclude: &[DeviceId],
        caller: &DeviceAddress,
        valid_at: u64,
    ) -> Result<Vec<ClaimedPackage>, StoreError>;

    /// A user, their identity and devices; `NotFound` for an unknown user.
    fn user(&self, user: &UserId) -> Result<UserRecord, StoreError>;

    /// Every user and their devices.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError>;

    /// Applies a batch of log writes in one transaction, in order, and
    /// returns only once it is durable. Each write's own refusals are in
    /// its outcome; an `Err` means nothing of the batch was stored.
    fn write_log(&self, batch: Vec<LogWrite>) -> Result<LogBatch, StoreError>;

    /// Up to `limit` entries of `device`'s inbox after `after` (`None`: from
    /// its acknowledged position), in log order, stopping past `max_bytes`
    /// of messages (at least one entry). `UnknownPosition` for a position
    /// this log never handed out.
    fn inbox(
        &self,
        device: &DeviceAddress,
        after: Option<Position>,
        limit: usize,
        max_bytes: usize,
    ) -> Result<InboxRead, StoreError>;

    /// How many entries `device` has after `after` (`None`: its
    /// acknowledged position).
    fn inbox_count(
        &self,
        device: &DeviceAddress,
        after: Option<Position>,
    ) -> Result<u64, StoreError>;

    /// Most bytes one account's devices may keep in the log; past it their
    /// letters are refused (`QuotaExceeded`) and nobody else's.
    fn set_account_quota(&self, bytes: u64);

    /// Deletes log rows that every device that reads them has
    /// acknowledged (a removed device counts until it read its removal),
    /// at most `max_rows`; returns how many.
    fn collect_garbage(&self, max_rows: usize) -> Result<u64, StoreError>;

    /// Forgets what no longer serves: tokens expired before `now_ms`, and
    /// client message ids accepted before `keep_since_ms` (a retry of one
    /// after that is taken as new).
    fn purge(&self, now_ms: i64, keep_since_ms: i64) -> Result<Purged, StoreError>;

    /// Records an audit entry for the running server's audit writer to
    /// number and append (from another process: `valised admin`).
    fn queue_audit(&self, entry: &[u8]) -> Result<(), StoreError>;

    /// Up to `limit` queued audit entries, oldest first, with their queue ids.
    fn queued_audit(&self, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Appends to the audit log in one transaction: the entries (the first
    /// must be number [`Store::audit_size`], else `Changed`), the subtrees
    /// they complete, the queue entries they took, and a checkpoint.
    fn append_audit(&self, batch: &AuditBatch) -> Result<(), StoreError>;

    /// How many entries the audit log holds.
    fn audit_size(&self) -> Result<u64, StoreError>;

    /// The number the next entry will take once everything queued so far
    /// is appended: where a device enrolled now starts to be shown the
    /// administrator's actions on its account.
    fn audit_position(&self) -> Result<u64, StoreError>;

    /// The hashes of these complete subtrees of the audit log, in order;
    /// `NotFound` if one is not stored (not complete yet).
    fn audit_nodes(&self, nodes: &[Subtree]) -> Result<Vec<Hash>, StoreError>;

    /// Up to `count` audit entries from number `start`, with their numbers.
    fn audit_entries(&self, start: u64, count: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// The newest signed checkpoint, if any.
    fn latest_audit_checkpoint(&self) -> Result<Option<String>, StoreError>;

    /// Every signed checkpoint, by size (for the offline verifier).
    fn audit_checkpoints(&self) -> Result<Vec<String>, StoreError>;

    /// Up to `limit` numbers, from `from` and below `below`, of the
    /// entries `user` must be shown ([`AuditBatch::accounts`]).
    fn audit_account(
        &self,
        user: &UserId,
        from: u64,
        below: u64,
        limit: usize,
    ) -> Result<Vec<u64>, StoreError>;

    /// The organisation's security desk (issue 10), if one is named.
    fn security_desk(&self) -> Result<Option<UserId>, StoreError>;

    /// Names the security desk; returns the one named before, if any.
    fn set_security_desk(&self, user: &UserId, now_ms: i64) -> Result<Option<UserId>, StoreError>;

    /// The accreditation authority's public key (hex, issue 11), if set.
    fn accreditation_authority(&self) -> Result<Option<String>, StoreError>;

    /// Sets the accreditation authority's key; returns the one before.
    fn set_accreditation_authority(
        &self,
        key: &str,
        now_ms: i64,
    ) -> Result<Option<String>, StoreError>;

    /// Adds an attestation to `user`'s directory entry, drops the user's
    /// attestations that `expired` says are, and queues the user for
    /// publication, in one transaction; false if it was there.
    /// `NotFound` for an unknown user; `QuotaExceeded` if the entry would
    /// then carry more than `max` (the directory could not publish it).
    fn add_attestation(
        &self,
        user: &UserId,
        attestation: &[u8],
        expired: &dyn Fn(&[u8]) -> bool,
        max: usize,
        now_ms: i64,
    ) -> Result<bool, StoreError>;
    /// Up to `limit` alert entries ([`AuditBatch::alerts`]) from number
    /// `from`, oldest first, with their numbers (`valised alerts`).
    fn alerts_from(&self, from: u64, limit: usize) -> Result<Vec<(u64, Vec<u8>)>, StoreError>;

    /// Records a new blob of `b.length` bytes, unless its owner's blobs
    /// would then declare more than `quota` bytes (`QuotaExceeded`).
    fn create_blob(&self, b: &BlobRecord, quota: u64) -> Result<(), StoreError>;
    fn blob(&self, id: &BlobId) -> Result<Option<BlobRecord>, StoreError>;
    /// Counts a part received; moves the durable offset from `from` to
    /// `to` (`Changed` if it is not at `from` any more).
    fn blob_part(&self, id: &BlobId, from: u64, to: u64) -> Result<(), StoreError>;
    /// Links the complete blobs of `ids` that `owner` created to a letter
    /// about to go: they stay from then on. Returns those of `ids` it did
    /// not link: no such blob, another user's, or incomplete. Linking a
    /// linked blob again changes nothing. When the link came is not kept.
    fn link_blobs(&self, owner: &UserId, ids: &[BlobId]) -> Result<Vec<BlobId>, StoreError>;
    /// Forgets the blobs created before `before_ms` and never linked
    /// (incomplete ones included); returns them, for their files to be
    /// removed.
    fn expire_blobs(&self, before_ms: i64) -> Result<Vec<BlobId>, StoreError>;
}

/// What the server knows of an attachment blob: never a name or content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRecord {
    pub id: BlobId,
    /// The user whose device created it (whose quota it counts against).
    pub owner: UserId,
    /// Declared at creation.
    pub length: u64,
    /// Bytes fsynced: an upload resumes here.
    pub durable: u64,
    /// Parts received, including any sent again.
    pub parts: u64,
    pub created_at_ms: i64,
}

impl BlobRecord {
    pub fn is_complete(&self) -> bool {
        self.durable == self.length
    }
}

/// One append to the audit log ([`Store::append_audit`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditBatch {
    /// The number of the first entry.
    pub first: u64,
    /// Canonical entries (`valise_proto::audit::Entry::encode`).
    pub entries: Vec<Vec<u8>>,
    /// The subtrees the entries complete, with their hashes.
    pub nodes: Vec<(Subtree, Hash)>,
    /// Queue ids up to which [`Store::queued_audit`] entries are now in the log.
    pub dequeued: Option<u64>,
    /// A checkpoint signed over the log with these entries.
    pub checkpoint: Option<StoredCheckpoint>,
    /// The entries of this batch that an account must be shown, by number.
    pub accounts: Vec<(UserId, u64)>,
    /// The entries of this batch that are alerts (`alert_raised`), by number.
    pub alerts: Vec<u64>,
}

/// A signed checkpoint as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredCheckpoint {
    pub size: u64,
    /// The signed note.
    pub note: String,
    pub signed_at_ms: i64,
}

/// TEST ONLY (feature `adversary`): what an intruder holding the database
/// does to it, outside the production contract.
#[cfg(feature = "adversary")]
pub trait Tampering: Send + Sync + 'static {
    /// Applies one lie; returns the log rows it names or made.
    fn tamper(&self, op: &Tamper) -> Result<Vec<u64>, StoreError>;

    /// A consistent copy of the whole database (the key directory's tables
    /// included) in a new file beside it, left there (test data
    /// directories are temporary); returns its path. The adversary build
    /// splits the directory from it.
    fn snapshot(&self) -> Result<std::path::PathBuf, StoreError>;

    /// Every entry waiting for `device`, without content.
    fn waiting(&self, device: &DeviceAddress) -> Result<Vec<StoredEntry>, StoreError>;
}

/// What [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub tokens: u64,
    pub message_ids: u64,
}

/// TEST ONLY (feature `adversary`): a lie told through the store. Rows
/// are log positions.
#[cfg(feature = "adversary")]
#[derive(Debug, Clone)]
pub enum Tamper {
    /// The row behind a device's inbox entry at `seq` (none or one).
    EntryOf { device: DeviceAddress, seq: u64 },
    /// The conversation's most recent commit row (none or one).
    LatestCommit { conversation: ConversationId },
    /// Hides the row from these devices.
    Withhold {
        row: u64,
        devices: Vec<DeviceAddress>,
    },
    /// Delivers a copy of the row at the end of these inboxes.
    Deliver {
        row: u64,
        devices: Vec<DeviceAddress>,
    },
    /// Caps the database at its present size (`true`: a full disk) or lifts the cap.
    DiskFull(bool),
    /// Stores a commit row without touching the conversation, delivered
    /// to nobody; returns its row.
    StoreCommit {
        conversation: ConversationId,
        sender: DeviceAddress,
        commit: Vec<u8>,
        now_ms: i64,
    },
}
