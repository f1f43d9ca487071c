//! The key directory inside the server: one [`Directory`] per process on the
//! server's own database file (tables `directory_*`, with no secret: the
//! keys come from key files, [`DirectoryKeys`]), and the publisher task
//! that turns queued users into epochs.
//!
//! A change to a user's devices (enrolment, approval, revocation, reset)
//! queues the user in the store, in the same transaction as the change
//! (`directory_pending`). The publisher wakes up, publishes every queued
//! user's whole device list ([`device_list`]) as one epoch, removes the
//! queue entries it covered and announces the signed root; it then waits
//! at least the publish interval before the next epoch, so changes arriving
//! meanwhile are batched. It also looks at the queue every second (or
//! every interval, if longer) on its own: `valised admin revoke` queues a
//! user from another process, which cannot wake it. Entries left by a
//! crash are published at start. A change is answered once its entry is
//! covered.
//!
//! akd's calls are CPU-bound despite being `async`: they run on a blocking
//! thread ([`DirectoryService::call`]), never on the request threads.

use crate::background::{Background, StopSignal};
use crate::directory_keys::DirectoryKeys;
use crate::store::{DeviceRecord, Store, StoreError, UserRecord};
use std::future::Future;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use valise_directory::{
    DeviceEntry, DeviceList, Directory, DirectoryError, DirectoryKey, DirectoryStorage, Proven,
    RootSigner, SignedRoot, SqliteDirectoryStorage,
};
use valise_proto::UserId;
use valise_proto::limits::MAX_AUDIT_SPAN;

/// The directory as the server runs it.
pub type ServerDirectory = Directory<SqliteDirectoryStorage>;

/// Default of `valised run --directory-interval-ms`.
pub const DEFAULT_INTERVAL_MS: u64 = 2000;

/// How long an enrolment waits for the epoch that publishes it.
const PUBLISH_TIMEOUT: Duration = Duration::from_secs(60);

/// How often, at least, the publisher looks at its queue unasked.
const POLL_EVERY: Duration = Duration::from_secs(1);

/// Why a directory operation failed in the server.
#[derive(Debug, thiserror::Error)]
pub enum DirectoryServiceError {
    #[error(transparent)]
    Directory(#[from] DirectoryError),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    /// The queued change was not published in time (it stays queued).
    #[error("the key directory did not publish the change in time")]
    Timeout,
    /// The publisher or the blocking thread is gone (server stopping).
    #[error("the key directory is stopping: {0}")]
    Stopped(String),
    /// An epoch that was never published.
    #[error("epoch {0} is not published")]
    NoSuchEpoch(u64),
    /// An audit over more than [`MAX_AUDIT_SPAN`] epochs, or backwards.
    #[error("{0}")]
    BadRange(String),
}

/// Opens the directory in the server database at `db_path` with its keys,
/// creating its tables (epoch 0) on first use.
pub async fn open(db_path: &Path, keys: &DirectoryKeys) -> Result<ServerDirectory, DirectoryError> {
    let storage = Arc::new(SqliteDirectoryStorage::open(db_path)?);
    Directory::open_with_vrf(storage, keys.signer(), keys.vrf()).await
}

/// Creates the directory (epoch 0) for `valised init`; returns its public key.
pub fn initialise(db_path: &Path, keys: &DirectoryKeys) -> Result<DirectoryKey, DirectoryError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| DirectoryError::Internal(format!("runtime: {e}")))?;
    rt.block_on(async { Ok(open(db_path, keys).await?.directory_key()) })
}

/// Which proof a device asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProofKind {
    /// The current device list.
    Lookup,
    /// Every device list ever published.
    History,
}

/// What the publisher announced last.
#[derive(Debug, Clone)]
struct Published {
    /// Every queue entry up to this position is in `root`'s epoch (or earlier).
    covered: u64,
    root: SignedRoot,
}

/// The directory, its publisher and what handlers ask of them.
pub struct DirectoryService {
    dir: Arc<ServerDirectory>,
    /// The directory's keys (the adversary build opens copies with them).
    keys: Arc<DirectoryKeys>,
    /// The same key as the directory's, to sign roots of past epochs (audit).
    signer: RootSigner,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    published: watch::Receiver<Published>,
}

impl std::fmt::Debug for DirectoryService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DirectoryService")
            .field("key", &self.dir.directory_key())
            .finish_non_exhaustive()
    }
}

/// Runs a directory future on a blocking thread.
pub(crate) async fn on_blocking<T, F, Fut>(
    dir: Arc<ServerDirectory>,
    f: F,
) -> Result<T, DirectoryServiceError>
where
    T: Send + 'static,
    F: FnOnce(Arc<ServerDirectory>) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, DirectoryError>>,
{
    let handle = tokio::runtime::Handle::current();
    tokio::task::spawn_blocking(move || handle.block_on(f(dir)))
        .await
        .map_err(|e| DirectoryServiceError::Stopped(e.to_string()))?
        .map_err(Into::into)
}

impl DirectoryService {
    /// Starts the publisher among the server's background tasks; it first
    /// publishes whatever the queue still holds.
    pub async fn start(
        dir: ServerDirectory,
        keys: Arc<DirectoryKeys>,
        store: Arc<dyn Store>,
        interval: Duration,
        background: &Background,
    ) -> Result<Self, DirectoryServiceError> {
        let signer = keys.signer();
        let dir = Arc::new(dir);
        let root = on_blocking(dir.clone(), |d| async move { d.root().await }).await?;
        let (tx, rx) = watch::channel(Published { covered: 0, root });
        let wake = Arc::new(Notify::new());
        background.spawn(
            "directory publisher",
            publisher(
                dir.clone(),
                store.clone(),
                wake.clone(),
                tx,
                interval,
                background.signal(),
            ),
        );
        Ok(Self {
            dir,
            keys,
            signer,
            store,
            wake,
            published: rx,
        })
    }

    /// Runs `f` on the directory, off the request threads.
    pub async fn call<T, F, Fut>(&self, f: F) -> Result<T, DirectoryServiceError>
    where
        T: Send + 'static,
        F: FnOnce(Arc<ServerDirectory>) -> Fut + Send + 'static,
        Fut: Future<Output = Result<T, DirectoryError>>,
    {
        on_blocking(self.dir.clone(), f).await
    }

    /// The public key clients pin.
    pub fn directory_key(&self) -> DirectoryKey {
        self.dir.directory_key()
    }

    /// The directory's secret keys.
    pub fn keys(&self) -> &Arc<DirectoryKeys> {
        &self.keys
    }

    /// The store the publisher reads device lists from.
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.store
    }

    /// Waits until queue entry `seq` is published; returns the signed root
    /// of an epoch that contains it.
    pub async fn wait_published(&self, seq: u64) -> Result<SignedRoot, DirectoryServiceError> {
        self.wake.notify_one();
        let mut rx = self.published.clone();
        match tokio::time::timeout(PUBLISH_TIMEOUT, rx.wait_for(|p| p.covered >= seq)).await {
            Ok(Ok(p)) => Ok(p.root.clone()),
            Ok(Err(e)) => Err(DirectoryServiceError::Stopped(e.to_string())),
            Err(_) => Err(DirectoryServiceError::Timeout),
        }
    }

    /// The latest epoch the publisher announced (for `/metrics`).
    pub fn epoch(&self) -> u64 {
        self.published.borrow().root.epoch()
    }

    /// The current root, freshly signed.
    pub async fn root(&self) -> Result<SignedRoot, DirectoryServiceError> {
        self.call(|d| async move { d.root().await }).await
    }

    pub async fn lookup(&self, user: UserId) -> Result<Proven, DirectoryServiceError> {
        self.call(|d| async move { d.lookup(&user).await }).await
    }

    pub async fn history(&self, user: UserId) -> Result<Proven, DirectoryServiceError> {
        self.call(|d| async move { d.history(&user).await }).await
    }

    /// The root of a published epoch, signed now.
    pub fn root_of(&self, epoch: u64) -> Result<SignedRoot, DirectoryServiceError> {
        root_of(&self.dir, &self.signer, epoch)
    }

    /// The signed roots of `from` and `to` and the append-only proof
    /// between them.
    pub async fn audit(
        &self,
        from: u64,
        to: u64,
    ) -> Result<(SignedRoot, SignedRoot, Vec<u8>), DirectoryServiceError> {
        audit(&self.dir, &self.signer, from, to).await
    }
}

/// The root of a published epoch of `dir`, signed now by `signer`.
pub fn root_of(
    dir: &ServerDirectory,
    signer: &RootSigner,
    epoch: u64,
) -> Result<SignedRoot, DirectoryServiceError> {
    let (_, hash) = dir
        .storage()
        .epoch_roots(epoch, epoch)
        .map_err(DirectoryError::from)?
        .into_iter()
        .next()
        .ok_or(DirectoryServiceError::NoSuchEpoch(epoch))?;
    Ok(signer.sign(epoch, hash, crate::now_ms(), dir.vrf_public_key()))
}

/// The signed roots of epochs `from` and `to` of `dir` and the append-only
/// proof between them.
pub async fn audit(
    dir: &Arc<ServerDirectory>,
    signer: &RootSigner,
    from: u64,
    to: u64,
) -> Result<(SignedRoot, SignedRoot, Vec<u8>), DirectoryServiceError> {
    if from >= to {
        return Err(DirectoryServiceError::BadRange(format!(
            "from ({from}) must be before to ({to})"
        )));
    }
    if to - from > MAX_AUDIT_SPAN {
        return Err(DirectoryServiceError::BadRange(format!(
            "at most {MAX_AUDIT_SPAN} epochs per audit"
        )));
    }
    let current = on_blocking(dir.clone(), |d| async move { d.root().await })
        .await?
        .epoch();
    if to > current {
        return Err(DirectoryServiceError::NoSuchEpoch(to));
    }
    let proof = on_blocking(dir.clone(), move |d| async move { d.audit(from, to).await }).await?;
    Ok((
        root_of(dir, signer, from)?,
        root_of(dir, signer, to)?,
        proof,
    ))
}

/// The publisher task: publishes queued users, at most once per `interval`,
/// until the server stops. It stops between epochs, never inside one.
async fn publisher(
    dir: Arc<ServerDirectory>,
    store: Arc<dyn Store>,
    wake: Arc<Notify>,
    tx: watch::Sender<Published>,
    interval: Duration,
    mut stop: StopSignal,
) {
    loop {
        // How long to rest, and whether a new change may cut the rest short.
        let (rest, wakeable) = match publish_pending(&dir, &store).await {
            Ok(Some(p)) => {
                tracing::info!(epoch = p.root.epoch(), "directory epoch published");
                tx.send_replace(p);
                (interval, false)
            }
            Ok(None) => (interval.max(POLL_EVERY), true),
            Err(e) => {
                tracing::error!(error = %e, "directory publish failed; retrying");
                (interval.max(Duration::from_millis(500)), false)
            }
        };
        let woken = async {
            if wakeable {
                wake.notified().await
            } else {
                std::future::pending().await
            }
        };
        tokio::select! {
            () = tokio::time::sleep(rest) => {}
            () = woken => {}
            () = stop.stopped() => return,
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// What the directory publishes for a user: their identity and every
/// device they ever enrolled, with the approvals and revocations exactly as
/// stored. The server invents none: only the user's devices sign them.
pub fn device_list(user: &UserRecord) -> Result<DeviceList, DirectoryError> {
    DeviceList::new(
        user.identity.clone(),
        user.devices.iter().map(entry).collect(),
    )?
    .with_attestations(user.attestations.clone())
}

fn entry(d: &DeviceRecord) -> DeviceEntry {
    DeviceEntry {
        approval: d.approval.clone(),
        revocation: d.revocation.clone(),
        ..DeviceEntry::new(d.device, d.signature_key.clone(), d.number, d.generation)
    }
}

/// One epoch for everything queued; `None` if the queue is empty.
async fn publish_pending(
    dir: &Arc<ServerDirectory>,
    store: &Arc<dyn Store>,
) -> Result<Option<Published>, DirectoryServiceError> {
    let st = store.clone();
    let (changes, covered) = tokio::task::spawn_blocking(move || {
        let (users, covered) = st.directory_pending()?;
        let mut changes = Vec::with_capacity(users.len());
        for user in users {
            let record = match st.user(&user) {
                Ok(r) => r,
                Err(StoreError::NotFound) => {
                    tracing::warn!(%user, "queued for the directory but unknown");
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            match device_list(&record) {
                Ok(list) => changes.push((user, list)),
                // One bad entry must not hold back everyone else's.
                Err(e) => tracing::error!(%user, error = %e, "device list not publishable"),
            }
        }
        Ok::<_, DirectoryServiceError>((changes, covered))
    })
    .await
    .map_err(|e| DirectoryServiceError::Stopped(e.to_string()))??;
    if covered == 0 {
        return Ok(None);
    }
    let root = on_blocking(dir.clone(), |d| async move { d.publish(changes).await }).await?;
    let st = store.clone();
    tokio::task::spawn_blocking(move || st.clear_directory_pending(covered))
        .await
        .map_err(|e| DirectoryServiceError::Stopped(e.to_string()))??;
    Ok(Some(Published { covered, root }))
}
