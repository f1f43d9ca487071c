//! The server's side: publish device lists, hand out proofs and signed roots.
//!
//! One [`Directory`] per server process. It is the only writer of its
//! tables (akd caches tree nodes in memory); any number of tasks may ask it
//! for proofs concurrently, and publishes are serialised. Every method is
//! CPU-bound for milliseconds (publishing: up to seconds): the server calls
//! them from a task of its own, not from a latency-critical handler loop.

use crate::config::Config;
use crate::entry::DeviceList;
use crate::error::DirectoryError;
use crate::root::{DirectoryKey, RootSigner, SignedRoot};
use crate::storage::{AkdDatabase, DirectoryStorage};
use crate::vrf::PersistentVrf;
use crate::wire;
use akd::storage::StorageManager;
use akd::{AkdLabel, AkdValue, AzksParallelismConfig, EpochHash, HistoryParams};
use std::collections::HashSet;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use valise_proto::UserId;

/// How long akd keeps a tree node in its in-memory cache.
const CACHE_ITEM_LIFETIME: Duration = Duration::from_secs(300);
/// Upper bound of akd's node cache (a 100,000-user tree is about 60 MB).
const CACHE_LIMIT_BYTES: usize = 512 * 1024 * 1024;

type Akd<S> = akd::Directory<Config, AkdDatabase<S>, PersistentVrf>;

/// A proof together with the signed root it was made against: the two are
/// read under one lock, so they always match.
#[derive(Debug, Clone)]
pub struct Proven {
    pub root: SignedRoot,
    /// akd's protobuf encoding of the proof (see [`crate::wire`]).
    pub proof: Vec<u8>,
}

/// The key directory of one server.
pub struct Directory<S: DirectoryStorage> {
    akd: Akd<S>,
    storage: Arc<S>,
    signer: RootSigner,
    vrf_public_key: [u8; 32],
    /// Publishes are serialised, and proofs wait for a publish to finish:
    /// akd's storage manager (and its cache) is shared, and a proof made
    /// while a publish's transaction is open does not verify (measured:
    /// `proofs_made_during_a_publish_verify` fails without this lock).
    epoch_lock: tokio::sync::RwLock<()>,
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

fn label(user: &UserId) -> AkdLabel {
    AkdLabel::from(user.as_str())
}

impl<S: DirectoryStorage> Directory<S> {
    /// Opens the directory in `storage`, creating it (empty, epoch 0) and
    /// its VRF key on first use. `signer` is the server's directory key.
    pub async fn open(storage: Arc<S>, signer: RootSigner) -> Result<Self, DirectoryError> {
        let vrf = PersistentVrf::load_or_create(&*storage)?;
        Self::open_with_vrf(storage, signer, vrf).await
    }

    /// As [`Directory::open`], with a VRF key the caller keeps outside
    /// `storage` (nothing secret is then stored there).
    pub async fn open_with_vrf(
        storage: Arc<S>,
        signer: RootSigner,
        vrf: PersistentVrf,
    ) -> Result<Self, DirectoryError> {
        let vrf_public_key = vrf.public_key()?;
        let manager = StorageManager::new(
            AkdDatabase::new(storage.clone()),
            Some(CACHE_ITEM_LIFETIME),
            Some(CACHE_LIMIT_BYTES),
            None,
        );
        let akd = Akd::new(manager, vrf, AzksParallelismConfig::default()).await?;
        let dir = Self {
            akd,
            storage,
            signer,
            vrf_public_key,
            epoch_lock: tokio::sync::RwLock::new(()),
        };
        // A crash between akd's commit and recording the hash leaves at most
        // the latest epoch unrecorded: record it now.
        let EpochHash(epoch, hash) = dir.akd.get_epoch_hash().await?;
        if dir.storage.epoch_roots(epoch, epoch)?.is_empty() {
            dir.storage.put_epoch_root(epoch, hash)?;
        }
        Ok(dir)
    }

    /// The public key clients pin to verify roots.
    pub fn directory_key(&self) -> DirectoryKey {
        self.signer.public_key()
    }

    /// The VRF public key (also inside every signed root).
    pub fn vrf_public_key(&self) -> [u8; 32] {
        self.vrf_public_key
    }

    fn sign(&self, EpochHash(epoch, hash): EpochHash) -> SignedRoot {
        self.signer.sign(epoch, hash, now_ms(), self.vrf_public_key)
    }

    /// Publishes the new device list of each changed user as one new epoch;
    /// returns its signed root. A list equal to the user's current one is
    /// skipped; if nothing changed, no epoch is made and the current root is
    /// returned. Each user may appear once.
    pub async fn publish(
        &self,
        changes: Vec<(UserId, DeviceList)>,
    ) -> Result<SignedRoot, DirectoryError> {
        let mut seen = HashSet::with_capacity(changes.len());
        if let Some((dup, _)) = changes.iter().find(|(u, _)| !seen.insert(u.clone())) {
            return Err(DirectoryError::InvalidRequest(format!(
                "{dup} appears twice in one epoch"
            )));
        }
        let updates = changes
            .iter()
            .map(|(u, list)| Ok((label(u), AkdValue(list.encode()?))))
            .collect::<Result<Vec<_>, DirectoryError>>()?;
        let _guard = self.epoch_lock.write().await;
        if updates.is_empty() {
            return Ok(self.sign(self.akd.get_epoch_hash().await?));
        }
        let epoch_hash = self.akd.publish(updates).await?;
        self.storage.put_epoch_root(epoch_hash.0, epoch_hash.1)?;
        Ok(self.sign(epoch_hash))
    }

    /// The current root, freshly signed.
    pub async fn root(&self) -> Result<SignedRoot, DirectoryError> {
        let _guard = self.epoch_lock.read().await;
        Ok(self.sign(self.akd.get_epoch_hash().await?))
    }

    /// Proof of `user`'s current device list. `NotFound` if never published.
    pub async fn lookup(&self, user: &UserId) -> Result<Proven, DirectoryError> {
        let _guard = self.epoch_lock.read().await;
        let (proof, epoch_hash) = self
            .akd
            .lookup(label(user))
            .await
            .map_err(|e| not_found(e, user))?;
        Ok(Proven {
            root: self.sign(epoch_hash),
            proof: wire::encode_lookup(&proof)?,
        })
    }

    /// Proof of every device list ever published for `user`.
    pub async fn history(&self, user: &UserId) -> Result<Proven, DirectoryError> {
        let _guard = self.epoch_lock.read().await;
        let (proof, epoch_hash) = self
            .akd
            .key_history(&label(user), HistoryParams::Complete)
            .await
            .map_err(|e| not_found(e, user))?;
        Ok(Proven {
            root: self.sign(epoch_hash),
            proof: wire::encode_history(&proof)?,
        })
    }

    /// Proof that epoch `to` only appended to epoch `from` (`from < to`).
    pub async fn audit(&self, from: u64, to: u64) -> Result<Vec<u8>, DirectoryError> {
        if from >= to {
            return Err(DirectoryError::InvalidRequest(format!(
                "audit from epoch {from} to {to}: the start must be before the end"
            )));
        }
        let _guard = self.epoch_lock.read().await;
        let hashes: Vec<[u8; 32]> = self
            .storage
            .epoch_roots(from, to)?
            .into_iter()
            .map(|(_, h)| h)
            .collect();
        let expected = usize::try_from(to - from + 1).unwrap_or(usize::MAX);
        if hashes.len() != expected {
            return Err(DirectoryError::InvalidRequest(format!(
                "epochs {from}..={to} are not all published"
            )));
        }
        let proof = self.akd.audit(from, to).await?;
        wire::encode_audit(&hashes, &proof)
    }

    /// The storage underneath (for the server's admin tools).
    pub fn storage(&self) -> &Arc<S> {
        &self.storage
    }
}

/// akd says "not found" for an unknown user as a storage error.
fn not_found(e: akd::errors::AkdError, user: &UserId) -> DirectoryError {
    match DirectoryError::from(e) {
        DirectoryError::NotFound(_) => DirectoryError::NotFound(user.to_string()),
        other => other,
    }
}
