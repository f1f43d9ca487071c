//! What every handler shares.

use crate::audit::Evidence;
use crate::auth::{Challenges, Sessions};
use crate::background::Background;
use crate::blobs::BlobFiles;
use crate::delivery::{Delivery, Wakeups};
use crate::directory::DirectoryService;
use crate::limits::{Limits, RateLimits};
use crate::metrics::Metrics;
use crate::standing::Standing;
use crate::store::Store;
use openmls_libcrux_crypto::CryptoProvider;
use std::sync::Arc;
use tokio::sync::watch;
use valise_mls::Policy;
use valise_proto::tlog::AuditKey;

/// Shared, cheaply cloned state of the API.
#[derive(Clone)]
pub struct AppState {
    pub store: Arc<dyn Store>,
    pub crypto: Arc<CryptoProvider>,
    pub policy: Arc<Policy>,
    /// This server's domain: users it enrols live there.
    pub domain: Arc<str>,
    pub challenges: Arc<Challenges>,
    pub sessions: Arc<Sessions>,
    /// Revoked and approved devices, for the per-request checks.
    pub standing: Arc<Standing>,
    pub limits: Arc<RateLimits>,
    pub delivery: Delivery,
    pub wakeups: Arc<Wakeups>,
    /// The key directory and its publisher.
    pub directory: Arc<DirectoryService>,
    /// What `/metrics` shows; counted whether or not it is served.
    pub metrics: Arc<Metrics>,
    /// Where handlers record what they did (the audit log's writer).
    pub evidence: Evidence,
    /// The audit log's public key, served to auditors.
    pub audit_key: Arc<AuditKey>,
    /// Attachment blobs' files and limits.
    pub blobs: Arc<BlobFiles>,
    /// The malicious server's switches (test builds only).
    #[cfg(feature = "adversary")]
    pub adversary: Arc<crate::adversary::Adversary>,
    /// The store's tampering side (test builds only).
    #[cfg(feature = "adversary")]
    pub tamper: Option<Arc<dyn crate::store::Tampering>>,
    /// Becomes true when the server stops, to end long polls early.
    pub shutdown: watch::Receiver<bool>,
    shutdown_tx: Arc<watch::Sender<bool>>,
}

impl AppState {
    /// Builds the state and starts the delivery writer and the watch on
    /// revoked devices (among `background`; needs a runtime).
    pub fn new(
        store: Arc<dyn Store>,
        domain: &str,
        directory: Arc<DirectoryService>,
        (evidence, audit_key): (Evidence, AuditKey),
        blobs: Arc<BlobFiles>,
        background: &Background,
    ) -> Result<Self, openmls_traits::types::CryptoError> {
        let wakeups = Arc::new(Wakeups::default());
        let (tx, rx) = watch::channel(false);
        let standing = Arc::new(Standing::default());
        crate::standing::start(store.clone(), standing.clone(), background);
        Ok(Self {
            delivery: Delivery::start(store.clone(), wakeups.clone()),
            store,
            crypto: Arc::new(CryptoProvider::new()?),
            policy: Arc::new(Policy::default()),
            domain: domain.into(),
            challenges: Arc::new(Challenges::default()),
            sessions: Arc::new(Sessions::default()),
            standing,
            limits: Arc::new(Limits::default().into()),
            wakeups,
            directory,
            metrics: Arc::new(Metrics::new(evidence.alerts.clone())),
            evidence,
            audit_key: Arc::new(audit_key),
            blobs,
            #[cfg(feature = "adversary")]
            adversary: Arc::default(),
            #[cfg(feature = "adversary")]
            tamper: None,
            shutdown: rx,
            shutdown_tx: Arc::new(tx),
        })
    }

    /// Replaces the default rate limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = Arc::new(limits.into());
        self
    }

    /// Lets the adversary's routes tamper with the store (test builds only).
    #[cfg(feature = "adversary")]
    pub fn with_tampering(mut self, tamper: Arc<dyn crate::store::Tampering>) -> Self {
        self.tamper = Some(tamper);
        self
    }

    /// Tells long polls to answer now.
    pub fn begin_shutdown(&self) {
        self.shutdown_tx.send_replace(true);
    }
}
