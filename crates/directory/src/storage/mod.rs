//! Where the directory lives: a small synchronous storage contract, akd's
//! async `Database` on top of it, and the SQLite implementation.
//!
//! akd needs three things from a store: opaque records by key (the tree's
//! nodes and its one `Azks` record), the per-user value states queried by
//! user and epoch or version, and a batch write that lands all of an epoch
//! at once. [`DirectoryStorage`] is exactly that, plus named secrets for the
//! VRF key (and, if the server wants, the root signing key). A backend only
//! implements this trait; [`AkdDatabase`] does the rest.

mod akd_db;
mod codec;
pub mod sqlite;

pub use akd_db::AkdDatabase;
pub use sqlite::SqliteDirectoryStorage;

use crate::error::DirectoryError;
use zeroize::Zeroizing;

/// Why a storage operation failed. Nothing was written when one is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BackendError(pub String);

impl From<BackendError> for DirectoryError {
    fn from(e: BackendError) -> Self {
        DirectoryError::Storage(e.0)
    }
}

impl From<rusqlite::Error> for BackendError {
    fn from(e: rusqlite::Error) -> Self {
        BackendError(e.to_string())
    }
}

/// A stored record: `(key, value)`.
pub type KeyValue = (Vec<u8>, Vec<u8>);

/// The kinds of opaque records (value states have their own table).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RecordKind {
    /// akd's single tree summary (latest epoch, node count).
    Azks,
    /// One node of the tree, with its previous version.
    TreeNode,
}

impl RecordKind {
    /// Stable number stored in the database.
    pub fn code(self) -> u8 {
        match self {
            Self::Azks => 1,
            Self::TreeNode => 2,
        }
    }
}

/// One published value of one user: version `version`, published in `epoch`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserState {
    /// The akd label: the user id's bytes.
    pub username: Vec<u8>,
    pub epoch: u64,
    pub version: u64,
    /// The tree label the VRF gave this version.
    pub label_val: [u8; 32],
    pub label_len: u32,
    /// The encoded [`crate::DeviceList`].
    pub value: Vec<u8>,
}

/// Which state of a user to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateQuery {
    /// The state with this version (the earliest epoch if several).
    Version(u64),
    /// The state published in exactly this epoch.
    Epoch(u64),
    /// The latest state published at or before this epoch.
    AtOrBefore(u64),
    /// The latest state.
    Latest,
    /// The first state.
    Earliest,
}

/// Everything one write carries; a backend applies it in one transaction
/// (all or nothing), replacing records and states with the same key.
#[derive(Debug, Clone, Default)]
pub struct WriteBatch {
    /// `(kind, key, value)`.
    pub records: Vec<(RecordKind, Vec<u8>, Vec<u8>)>,
    pub states: Vec<UserState>,
}

/// The storage contract of the directory. Synchronous: akd's async calls
/// reach it directly (each call is short), and a server backend can share
/// its own connections and transactions.
pub trait DirectoryStorage: Send + Sync + 'static {
    /// The records of `kind` among `keys` that exist, as `(key, value)`, in
    /// any order.
    fn get_records(
        &self,
        kind: RecordKind,
        keys: &[Vec<u8>],
    ) -> Result<Vec<KeyValue>, BackendError>;

    /// The states among `(username, epoch)` keys that exist, in any order.
    fn get_states(&self, keys: &[(Vec<u8>, u64)]) -> Result<Vec<UserState>, BackendError>;

    /// Applies the whole batch in one transaction.
    fn write(&self, batch: WriteBatch) -> Result<(), BackendError>;

    /// Every state of a user, by ascending epoch (empty if unknown).
    fn user_states(&self, username: &[u8]) -> Result<Vec<UserState>, BackendError>;

    /// One state of a user.
    fn user_state(
        &self,
        username: &[u8],
        query: StateQuery,
    ) -> Result<Option<UserState>, BackendError>;

    /// One state for each of several users (those that have one).
    fn user_states_at(
        &self,
        usernames: &[Vec<u8>],
        query: StateQuery,
    ) -> Result<Vec<UserState>, BackendError> {
        let mut out = Vec::with_capacity(usernames.len());
        for u in usernames {
            if let Some(s) = self.user_state(u, query)? {
                out.push(s);
            }
        }
        Ok(out)
    }

    /// A named secret (the VRF key), if stored.
    fn get_secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BackendError>;

    /// Stores `value` under `name` unless a value is already there; returns
    /// the value stored in the end. Two processes racing to create a key
    /// therefore agree on one.
    fn insert_secret_if_absent(
        &self,
        name: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError>;

    /// Records the root hash of an epoch (clients and auditors need every
    /// intermediate hash to check append-only proofs; akd keeps only the
    /// latest).
    fn put_epoch_root(&self, epoch: u64, root_hash: [u8; 32]) -> Result<(), BackendError>;

    /// The recorded root hashes of epochs `from..=to`, ascending.
    fn epoch_roots(&self, from: u64, to: u64) -> Result<Vec<(u64, [u8; 32])>, BackendError>;
}

impl<T: DirectoryStorage + ?Sized> DirectoryStorage for std::sync::Arc<T> {
    fn get_records(
        &self,
        kind: RecordKind,
        keys: &[Vec<u8>],
    ) -> Result<Vec<KeyValue>, BackendError> {
        (**self).get_records(kind, keys)
    }
    fn get_states(&self, keys: &[(Vec<u8>, u64)]) -> Result<Vec<UserState>, BackendError> {
        (**self).get_states(keys)
    }
    fn write(&self, batch: WriteBatch) -> Result<(), BackendError> {
        (**self).write(batch)
    }
    fn user_states(&self, username: &[u8]) -> Result<Vec<UserState>, BackendError> {
        (**self).user_states(username)
    }
    fn user_state(
        &self,
        username: &[u8],
        query: StateQuery,
    ) -> Result<Option<UserState>, BackendError> {
        (**self).user_state(username, query)
    }
    fn user_states_at(
        &self,
        usernames: &[Vec<u8>],
        query: StateQuery,
    ) -> Result<Vec<UserState>, BackendError> {
        (**self).user_states_at(usernames, query)
    }
    fn get_secret(&self, name: &str) -> Result<Option<Zeroizing<Vec<u8>>>, BackendError> {
        (**self).get_secret(name)
    }
    fn insert_secret_if_absent(
        &self,
        name: &str,
        value: &[u8],
    ) -> Result<Zeroizing<Vec<u8>>, BackendError> {
        (**self).insert_secret_if_absent(name, value)
    }
    fn put_epoch_root(&self, epoch: u64, root_hash: [u8; 32]) -> Result<(), BackendError> {
        (**self).put_epoch_root(epoch, root_hash)
    }
    fn epoch_roots(&self, from: u64, to: u64) -> Result<Vec<(u64, [u8; 32])>, BackendError> {
        (**self).epoch_roots(from, to)
    }
}
