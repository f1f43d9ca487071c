//! What the server keeps, behind one trait so that SQLite (default) and a
//! shared database later implement the same contract.
//!
//! Methods are synchronous: async handlers call them through
//! `tokio::task::spawn_blocking`. Every method that writes does so in one
//! transaction and returns only after it committed, so an answer to a client
//! always means "durable".

pub mod sqlite;

use valise_proto::api::EntryKind;
use valise_proto::{ConversationId, DeviceAddress, DeviceId, MessageId, UserId};

pub use sqlite::SqliteStore;

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
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The disk (or the database's size limit) is full.
    #[error("storage is full")]
    Full,
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

/// A device enrolling with an invite.
#[derive(Debug, Clone)]
pub struct Enrollment {
    pub code_hash: [u8; 32],
    pub device: DeviceAddress,
    pub signature_key: Vec<u8>,
    /// Validated one-time key packages (TLS bytes).
    pub key_packages: Vec<Vec<u8>>,
    pub last_resort: Vec<u8>,
    pub now_ms: i64,
}

/// An enrolled device as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceRecord {
    pub device: DeviceId,
    pub signature_key: Vec<u8>,
    pub enrolled_at_ms: i64,
}

/// A user and their devices, for `valised admin users`.
#[derive(Debug, Clone)]
pub struct UserRecord {
    pub user: UserId,
    pub devices: Vec<DeviceRecord>,
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
    /// The serialised public group state ([`crate::hub`]).
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

/// What happened to one message of a batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageOutcome {
    pub duplicate: bool,
    /// Devices whose inbox got an entry (empty for a duplicate).
    pub recipients: Vec<DeviceAddress>,
}

/// One inbox entry, joined with its payload.
#[derive(Debug, Clone)]
pub struct StoredEntry {
    pub seq: u64,
    pub kind: EntryKind,
    pub conversation: ConversationId,
    pub sender: DeviceAddress,
    pub message: Vec<u8>,
    pub ratchet_tree: Option<Vec<u8>>,
}

/// The storage contract of the server.
pub trait Store: Send + Sync + 'static {
    /// Records an invite (only the hash of its code).
    fn create_invite(
        &self,
        code_hash: [u8; 32],
        user: &UserId,
        now_ms: i64,
        expires_at_ms: i64,
    ) -> Result<(), StoreError>;

    /// Consumes the invite and creates the device (and user) in one
    /// transaction. `InvalidInvite` if the invite does not fit;
    /// `AlreadyExists` if the device id is taken. The user is queued for the
    /// key directory's next epoch in the same transaction; returns the queue
    /// position ([`Store::directory_pending`]).
    fn enroll(&self, e: &Enrollment) -> Result<u64, StoreError>;

    /// Queues `user` for the key directory's next epoch (their device list
    /// changed); returns the queue position, which increases strictly.
    fn mark_directory_pending(&self, user: &UserId, now_ms: i64) -> Result<u64, StoreError>;

    /// The users queued for the directory, and the highest queue position
    /// among them (0 if none).
    fn directory_pending(&self) -> Result<(Vec<UserId>, u64), StoreError>;

    /// Removes the queue entries up to `up_to`, once they are published.
    fn clear_directory_pending(&self, up_to: u64) -> Result<(), StoreError>;

    /// The stored signature key of a device, if enrolled.
    fn device_key(&self, device: &DeviceAddress) -> Result<Option<Vec<u8>>, StoreError>;

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

    /// Adds one-time key packages, replaces the last-resort one if given;
    /// returns the one-time stock.
    fn add_key_packages(
        &self,
        device: &DeviceAddress,
        one_time: &[Vec<u8>],
        last_resort: Option<&[u8]>,
    ) -> Result<u64, StoreError>;

    /// Takes one key package per device of `user` (except `exclude` and the
    /// caller): a one-time one (deleted) or else the last-resort one (kept).
    /// `NotFound` for an unknown user.
    fn claim_key_packages(
        &self,
        user: &UserId,
        exclude: &[DeviceId],
        caller: &DeviceAddress,
    ) -> Result<Vec<ClaimedPackage>, StoreError>;

    /// The devices of a user; `NotFound` for an unknown user.
    fn list_devices(&self, user: &UserId) -> Result<Vec<DeviceRecord>, StoreError>;

    /// Every user and their devices.
    fn list_users(&self) -> Result<Vec<UserRecord>, StoreError>;

    /// `AlreadyExists` if the id is taken.
    fn create_conversation(&self, c: &NewConversation) -> Result<(), StoreError>;

    fn load_conversation(
        &self,
        id: &ConversationId,
    ) -> Result<Option<ConversationRecord>, StoreError>;

    /// Applies a commit with compare-and-set on the epoch; returns every
    /// device whose inbox got an entry.
    fn apply_commit(&self, c: &AppliedCommit) -> Result<Vec<DeviceAddress>, StoreError>;

    /// Stores a batch of application messages in one transaction; one
    /// outcome per message, in order. A message refused for its own reasons
    /// (stale epoch, not a member) does not affect the others; an `Err` of
    /// the whole call means nothing was stored.
    fn append_messages(
        &self,
        batch: &[NewMessage],
    ) -> Result<Vec<Result<MessageOutcome, StoreError>>, StoreError>;

    /// Entries with `seq > after`, ascending, at most `limit`; and whether
    /// more follow.
    fn inbox_page(
        &self,
        device: &DeviceAddress,
        after: u64,
        limit: usize,
    ) -> Result<(Vec<StoredEntry>, bool), StoreError>;

    /// How many entries the device has after `after`.
    fn inbox_count(&self, device: &DeviceAddress, after: u64) -> Result<u64, StoreError>;

    /// Deletes the device's entries with `seq <= up_to`; returns how many.
    fn ack(&self, device: &DeviceAddress, up_to: u64) -> Result<u64, StoreError>;

    /// Forgets what no longer serves: tokens expired before `now_ms`, and
    /// application messages created before `keep_since_ms` that no inbox
    /// holds any more (kept until then so that a late retry of the same
    /// client message id is still recognised as a duplicate).
    fn purge(&self, now_ms: i64, keep_since_ms: i64) -> Result<Purged, StoreError>;

    /// TEST ONLY: what the adversary build does to stored messages.
    #[cfg(feature = "adversary")]
    fn tamper(&self, op: &Tamper) -> Result<Vec<i64>, StoreError>;
}

/// What [`Store::purge`] removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Purged {
    pub tokens: u64,
    pub messages: u64,
}

/// TEST ONLY (feature `adversary`): a lie told through the store. Payloads
/// are the stored messages; inbox entries point at them.
#[cfg(feature = "adversary")]
#[derive(Debug, Clone)]
pub enum Tamper {
    /// The payload behind a device's inbox entry (none or one).
    PayloadOf { device: DeviceAddress, seq: u64 },
    /// The conversation's most recent commit payload (none or one).
    LatestCommit { conversation: ConversationId },
    /// Removes the payload's entries from these inboxes.
    Withhold {
        payload: i64,
        devices: Vec<DeviceAddress>,
    },
    /// Appends the payload to the end of these inboxes (again).
    Deliver {
        payload: i64,
        devices: Vec<DeviceAddress>,
    },
    /// Caps the database at its present size (`true`: a full disk) or lifts the cap.
    DiskFull(bool),
    /// Stores a commit without touching the conversation (queued nowhere);
    /// returns its payload.
    StoreCommit {
        conversation: ConversationId,
        sender: DeviceAddress,
        commit: Vec<u8>,
        now_ms: i64,
    },
}
