//! The audit log's writer (issue 10, I7): every server-side action becomes
//! one [`Event`], which handlers hand to [`Evidence::emit`] and forget.
//! One writer task numbers the events, appends them to the Merkle tree of
//! [`valise_proto::tlog`] in batches, and signs a checkpoint with the key of
//! `D/keys/audit.key`.
//!
//! ```text
//! handlers ──Evidence::emit──▶ channel ──▶ writer task ──every 200 ms──▶ Store::append_audit
//! valised admin ──Store::queue_audit──▶ audit_queue ──┘      └──every interval, if grown──▶ checkpoint
//! ```
//!
//! Why a channel and not a write per action: the send path must not wait
//! for the audit log (issue 10 asks ≤ 10 % of its throughput), and one
//! transaction per batch costs one fsync for many events. Inbox reads are
//! the most frequent action: they are summed per device and written once
//! per checkpoint interval ([`Action::InboxRead`]), never a row per poll.
//!
//! What this costs: a `kill -9` loses the events of the last batch (at
//! most [`FLUSH_EVERY`]); what was written stays verifiable. A graceful
//! stop writes everything, a `server_stopped` entry and a checkpoint.
//! Events are also what the alert rules consume ([`crate::rules`]): the
//! writer shows each event to the rules as it takes it, and appends the
//! alerts they raise as `alert_raised` entries of the same batch. Once a
//! batch is durable its alerts are counted for `/metrics` and offered to
//! the webhook ([`crate::webhook`]).

use crate::background::{Background, StopSignal};
use crate::client_addr::ClientAddr;
use crate::metrics::{AlertCounts, AlertLabels};
use crate::rules::{Alert, RuleSettings, Rules};
use crate::store::{AuditBatch, Store, StoreError, StoredCheckpoint};
use crate::webhook::Webhook;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::mpsc;
use valise_proto::audit::{Action, Actor, Detail, Entry, Salt, Subject};
use valise_proto::tlog::{self, CheckpointSigner, Frontier, SignedCheckpoint};
use valise_proto::{ConversationId, DeviceAddress, UserId};

/// How often a checkpoint is signed when the log grew (`valised run
/// --checkpoint-interval-secs`).
pub const DEFAULT_CHECKPOINT_INTERVAL: Duration = Duration::from_secs(60);

/// How long an event waits in memory before its batch is written.
pub const FLUSH_EVERY: Duration = Duration::from_millis(200);

/// Most queued `valised admin` entries taken into one batch.
const QUEUE_BATCH: usize = 256;

/// The log's origin line and key name: `<domain>/valise-audit`.
pub fn origin(domain: &str) -> String {
    format!("{domain}/valise-audit")
}

/// One server-side action, as handlers describe it. Never content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub actor: Actor,
    pub action: Action,
    pub subject: Option<Subject>,
    pub from: Option<ClientAddr>,
    pub details: BTreeMap<String, Detail>,
}

impl Event {
    pub fn new(actor: Actor, action: Action) -> Self {
        Self {
            actor,
            action,
            subject: None,
            from: None,
            details: BTreeMap::new(),
        }
    }

    /// An action of an authenticated device.
    pub fn by(device: &DeviceAddress, action: Action) -> Self {
        Self::new(Actor::Device(device.clone()), action)
    }

    pub fn on_user(mut self, user: &UserId) -> Self {
        self.subject = Some(Subject::User(user.clone()));
        self
    }

    pub fn on_device(mut self, device: &DeviceAddress) -> Self {
        self.subject = Some(Subject::Device(device.clone()));
        self
    }

    pub fn on_conversation(mut self, id: &ConversationId) -> Self {
        self.subject = Some(Subject::Conversation(*id));
        self
    }

    pub fn from(mut self, addr: Option<ClientAddr>) -> Self {
        self.from = addr;
        self
    }

    pub fn count(mut self, key: &str, n: u64) -> Self {
        self.details.insert(key.to_owned(), Detail::Count(n));
        self
    }

    pub fn text(mut self, key: &str, value: impl Into<String>) -> Self {
        self.details
            .insert(key.to_owned(), Detail::Text(value.into()));
        self
    }

    /// Why the request was refused: its stable error code.
    pub fn refused(self, e: &crate::error::ApiError) -> Self {
        self.text("code", e.code.as_str())
    }

    /// The entry this event becomes at position `index`.
    pub fn entry(self, index: u64, time_ms: i64) -> Entry {
        let mut salt = [0u8; 16];
        // No randomness left on this machine is no reason to lose the
        // event: an unsalted entry only lets a guess at it be confirmed.
        if let Err(e) = crate::invite::fill_random(&mut salt) {
            tracing::error!(error = %e, "no randomness for an audit entry's salt");
        }
        Entry {
            index,
            time_ms,
            actor: self.actor,
            action: self.action,
            subject: self.subject,
            from: self.from.map(ClientAddr::ip),
            details: self.details,
            salt: Salt(salt),
        }
    }
}

/// What reaches the writer.
#[derive(Debug)]
enum Note {
    Event(Event, i64),
    InboxRead {
        device: DeviceAddress,
        entries: u64,
        from: Option<ClientAddr>,
    },
}

/// The handle handlers emit events through; cheap to clone. Emitting never
/// waits and never fails a request: once the writer has stopped (the
/// server is stopping) an event is logged and dropped.
#[derive(Debug, Clone)]
pub struct Evidence {
    tx: mpsc::UnboundedSender<Note>,
    /// The log's size and checkpoint time, as the writer last wrote them.
    pub status: Arc<LogStatus>,
    /// Alerts raised since the start, by kind.
    pub alerts: AlertCounts,
}

/// What the writer publishes for `/metrics`, read at scrape time.
#[derive(Debug, Default)]
pub struct LogStatus {
    /// Entries in the log.
    pub size: AtomicU64,
    /// When the newest checkpoint was signed, in ms (0 before the first
    /// this process signed; it signs one as it starts).
    pub checkpoint_at_ms: AtomicI64,
}

/// Where the writer's alerts go besides the log, and the rules' thresholds.
#[derive(Debug, Default)]
pub struct Alerting {
    pub rules: RuleSettings,
    pub webhook: Option<Webhook>,
}

impl Evidence {
    pub fn emit(&self, event: Event) {
        if let Err(e) = self.tx.send(Note::Event(event, crate::now_ms())) {
            tracing::warn!(event = ?e.0, "audit writer stopped: event not logged");
        }
    }

    /// One inbox read of `device` that returned `entries` entries.
    pub fn inbox_read(&self, device: &DeviceAddress, entries: u64, from: Option<ClientAddr>) {
        let _ = self.tx.send(Note::InboxRead {
            device: device.clone(),
            entries,
            from,
        });
    }
}

/// The tree as stored: its right frontier, read from O(log n) subtree rows.
fn load_tree(store: &dyn Store) -> Result<Frontier, StoreError> {
    let size = store.audit_size()?;
    let hashes = store.audit_nodes(&tlog::range_subtrees(0, size))?;
    Frontier::from_parts(size, hashes).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// Inbox reads of one device over one checkpoint interval.
#[derive(Debug, Default)]
struct Reads {
    reads: u64,
    entries: u64,
    from: Option<ClientAddr>,
}

/// The writer's state, owned by its task.
struct Writer {
    store: Arc<dyn Store>,
    signer: Arc<CheckpointSigner>,
    tree: Frontier,
    /// Size of the newest signed checkpoint.
    signed: u64,
    pending: Vec<(Event, i64)>,
    reads: BTreeMap<DeviceAddress, Reads>,
    rules: Rules,
    webhook: Option<Webhook>,
    status: Arc<LogStatus>,
    alerts: AlertCounts,
}

/// Starts the writer (among `background`): it appends `server_started`
/// and signs a checkpoint now, before returning, and appends
/// `server_stopped` and signs a last checkpoint when the server stops.
pub fn start(
    store: Arc<dyn Store>,
    signer: Arc<CheckpointSigner>,
    interval: Duration,
    alerting: Alerting,
    background: &Background,
) -> Result<Evidence, StoreError> {
    let tree = load_tree(store.as_ref())?;
    let signed = match store.latest_audit_checkpoint()? {
        Some(note) => SignedCheckpoint::parse(&note)
            .map_err(|e| StoreError::Corrupt(format!("stored audit checkpoint: {e}")))?
            .claimed()
            .size(),
        None => 0,
    };
    let (tx, rx) = mpsc::unbounded_channel();
    let status = Arc::new(LogStatus::default());
    status.size.store(tree.size(), Ordering::Relaxed);
    let alerts = AlertCounts::default();
    let mut writer = Writer {
        store,
        signer,
        tree,
        signed,
        pending: Vec::new(),
        reads: BTreeMap::new(),
        rules: Rules::new(alerting.rules),
        webhook: alerting.webhook,
        status: status.clone(),
        alerts: alerts.clone(),
    };
    writer.record(
        Event::new(Actor::Server, Action::ServerStarted),
        crate::now_ms(),
    );
    // Written before the server listens: from its first request on, the
    // server has a checkpoint that covers its start.
    let queued = writer.store.queued_audit(QUEUE_BATCH)?;
    if let Some((batch, tree)) = writer.batch(&queued, true) {
        writer.store.append_audit(&batch)?;
        writer.written(tree, &batch);
    }
    background.spawn("audit log", writer.run(rx, interval, background.signal()));
    Ok(Evidence { tx, status, alerts })
}

impl Writer {
    async fn run(
        mut self,
        mut rx: mpsc::UnboundedReceiver<Note>,
        every: Duration,
        mut stop: StopSignal,
    ) {
        let mut flush = tokio::time::interval(FLUSH_EVERY);
        let start = tokio::time::Instant::now();
        let mut checkpoint = tokio::time::interval_at(start + every, every);
        loop {
            tokio::select! {
                note = rx.recv() => match note {
                    Some(note) => self.absorb(note),
                    None => break,
                },
                _ = flush.tick() => self.flush(false).await,
                _ = checkpoint.tick() => {
                    self.sum_reads();
                    self.flush(true).await;
                }
                _ = stop.stopped() => break,
            }
        }
        while let Ok(note) = rx.try_recv() {
            self.absorb(note);
        }
        self.sum_reads();
        self.record(
            Event::new(Actor::Server, Action::ServerStopped),
            crate::now_ms(),
        );
        self.flush(true).await;
    }

    /// Takes an event for the next batch, with the alerts it raises.
    fn record(&mut self, event: Event, at: i64) {
        let raised = self.rules.observe(&event, at);
        self.pending.push((event, at));
        for alert in raised {
            self.pending.push((alert.event(), at));
        }
    }

    fn absorb(&mut self, note: Note) {
        match note {
            Note::Event(event, at) => self.record(event, at),
            Note::InboxRead {
                device,
                entries,
                from,
            } => {
                let r = self.reads.entry(device).or_default();
                r.reads += 1;
                r.entries += entries;
                r.from = from.or(r.from);
            }
        }
    }

    /// Turns the interval's inbox reads into one event per device.
    fn sum_reads(&mut self) {
        let now = crate::now_ms();
        for (device, r) in std::mem::take(&mut self.reads) {
            let event = Event::by(&device, Action::InboxRead)
                .from(r.from)
                .count("reads", r.reads)
                .count("entries", r.entries);
            self.record(event, now);
        }
    }

    /// Appends what is pending and queued; with `sign`, signs a checkpoint
    /// if the tree grew since the last one. On failure nothing is lost
    /// from memory: the next flush tries again.
    async fn flush(&mut self, sign: bool) {
        let store = self.store.clone();
        let queued =
            match tokio::task::spawn_blocking(move || store.queued_audit(QUEUE_BATCH)).await {
                Ok(Ok(q)) => q,
                Ok(Err(e)) => {
                    tracing::error!(error = %e, "audit queue unreadable");
                    Vec::new()
                }
                Err(e) => {
                    tracing::error!(error = %e, "audit queue read failed");
                    Vec::new()
                }
            };
        let Some((batch, tree)) = self.batch(&queued, sign) else {
            return;
        };
        let store = self.store.clone();
        let written = tokio::task::spawn_blocking(move || {
            let written = store.append_audit(&batch);
            (written, batch)
        })
        .await;
        match written {
            Ok((Ok(()), batch)) => self.written(tree, &batch),
            Ok((Err(e), _)) => {
                tracing::error!(error = %e, "audit batch not written; retrying");
                // Another writer, or a rollback under us: start from disk.
                match load_tree(self.store.as_ref()) {
                    Ok(t) => self.tree = t,
                    Err(e) => tracing::error!(error = %e, "audit log unreadable"),
                }
            }
            Err(e) => tracing::error!(error = %e, "audit batch failed"),
        }
    }

    /// The batch that appends `queued` and the pending events (and a
    /// checkpoint, with `sign`, if the tree grew), with the tree after it;
    /// none if there is nothing to write.
    fn batch(&self, queued: &[(u64, Vec<u8>)], sign: bool) -> Option<(AuditBatch, Frontier)> {
        let grows = !self.pending.is_empty() || !queued.is_empty();
        let unsigned = sign && self.tree.size() > self.signed;
        if !grows && !unsigned {
            return None;
        }
        let mut tree = self.tree.clone();
        let mut batch = AuditBatch {
            first: tree.size(),
            dequeued: queued.last().map(|(id, _)| *id),
            ..AuditBatch::default()
        };
        for (id, bytes) in queued {
            let entry = match Entry::decode(bytes) {
                Ok(entry) => Entry {
                    index: tree.size(),
                    ..entry
                },
                // Written by our own `valised admin`: unreadable means a
                // bug or an intruder; say so in the log itself.
                Err(e) => Event::new(Actor::Server, Action::AdminCommand)
                    .text("unreadable_queue_entry", e.code())
                    .count("queue_id", *id)
                    .entry(tree.size(), crate::now_ms()),
            };
            push_entry(&mut tree, &mut batch, &entry);
        }
        for (event, at) in &self.pending {
            let entry = event.clone().entry(tree.size(), *at);
            push_entry(&mut tree, &mut batch, &entry);
        }
        if sign && tree.size() > self.signed {
            let started = std::time::Instant::now();
            match self.signer.sign(tree.size(), tree.root()) {
                Ok(c) => {
                    // Signing time, for BENCHMARKS.md.
                    tracing::debug!(
                        size = c.size(),
                        micros = started.elapsed().as_micros() as u64,
                        "audit checkpoint signed"
                    );
                    batch.checkpoint = Some(StoredCheckpoint {
                        size: c.size(),
                        note: c.note().to_owned(),
                        signed_at_ms: crate::now_ms(),
                    });
                }
                Err(e) => tracing::error!(error = %e, "audit checkpoint not signed"),
            }
        }
        Some((batch, tree))
    }

    /// `batch`, which made `tree`, is durable: its alerts go out.
    fn written(&mut self, tree: Frontier, batch: &AuditBatch) {
        self.tree = tree;
        self.pending.clear();
        self.status.size.store(self.tree.size(), Ordering::Relaxed);
        if let Some(c) = &batch.checkpoint {
            self.signed = c.size;
            self.status
                .checkpoint_at_ms
                .store(c.signed_at_ms, Ordering::Relaxed);
        }
        let alerts = batch.alerts.iter().filter_map(|i| {
            let bytes = batch
                .entries
                .get(usize::try_from(i.checked_sub(batch.first)?).ok()?)?;
            Alert::from_entry(Entry::decode(bytes).ok()?)
        });
        for alert in alerts {
            tracing::warn!(
                id = alert.id,
                kind = alert.kind.as_str(),
                severity = alert.severity.as_str(),
                "server alert"
            );
            self.alerts
                .get_or_create(&AlertLabels {
                    kind: alert.kind.as_str(),
                })
                .inc();
            if let Some(w) = &self.webhook {
                w.offer(&alert);
            }
        }
    }
}

fn push_entry(tree: &mut Frontier, batch: &mut AuditBatch, entry: &Entry) {
    if let Some(user) = entry.shown_to() {
        batch.accounts.push((user.clone(), entry.index));
    }
    if entry.action == Action::AlertRaised {
        batch.alerts.push(entry.index);
    }
    let bytes = entry.encode();
    batch.nodes.extend(tree.push(&bytes));
    batch.entries.push(bytes);
}

/// Why `valised audit verify` failed: the first thing found wrong.
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    #[error("entry {expected} is missing (the next stored entry is {found}): deleted")]
    Missing { expected: u64, found: u64 },
    #[error("entry {at} is not an audit entry ({code}): edited")]
    Unreadable { at: u64, code: &'static str },
    #[error("entry {at} says it is entry {claims}: moved or reordered")]
    Misplaced { at: u64, claims: u64 },
    #[error("checkpoint of size {size}: {source}")]
    Checkpoint { size: u64, source: tlog::TlogError },
    #[error(
        "checkpoint of size {size} signs another tree than the entries make: an entry before {size} was edited, deleted or reordered"
    )]
    RootMismatch { size: u64 },
    #[error("a checkpoint signs {signed} entries but only {entries} are stored: truncated")]
    Truncated { signed: u64, entries: u64 },
    #[error("the stored subtree hashes (what proofs are made of) do not match the entries")]
    NodesDiffer,
    #[error(
        "the index of what {user} must be shown lists {listed:?}, but the entries say {logged:?}: an administrator's action on the account is hidden from its devices (or one is invented)"
    )]
    AccountIndex {
        user: String,
        listed: Vec<u64>,
        logged: Vec<u64>,
    },
    #[error("database: {0}")]
    Store(#[from] StoreError),
}

impl VerifyError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Missing { .. } => "audit_entry_missing",
            Self::Unreadable { .. } => "audit_entry_unreadable",
            Self::Misplaced { .. } => "audit_entry_misplaced",
            Self::Checkpoint { source, .. } => source.code(),
            Self::RootMismatch { .. } => "audit_root_mismatch",
            Self::Truncated { .. } => "audit_truncated",
            Self::NodesDiffer => "audit_nodes_differ",
            Self::AccountIndex { .. } => "audit_account_index",
            Self::Store(_) => "audit_store",
        }
    }
}

/// What a successful offline verification covered.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Verified {
    pub entries: u64,
    pub checkpoints: u64,
    /// Size of the newest checkpoint (0 if none).
    pub newest_checkpoint: u64,
    /// The root over every entry, hex.
    pub root: String,
}

/// Entries read per page by [`verify_offline`].
const VERIFY_PAGE: usize = 4096;

/// `valised audit verify`: recomputes the whole tree from the entries and
/// checks that they are contiguous and each names its own place, that
/// every checkpoint is signed by `key` over the tree at its size, that none
/// signs more entries than are stored, and that the stored subtree hashes
/// (which remote proofs are made of) agree, and that the index each
/// account is shown from lists exactly the entries about it.
pub fn verify_offline(store: &dyn Store, key: &tlog::AuditKey) -> Result<Verified, VerifyError> {
    let mut checkpoints = Vec::new();
    for note in store.audit_checkpoints()? {
        let parsed = SignedCheckpoint::parse(&note);
        let size = parsed.as_ref().map_or(0, |c| c.claimed().size());
        let verified = parsed
            .and_then(|c| c.verify(key))
            .map_err(|source| VerifyError::Checkpoint { size, source })?;
        checkpoints.push(verified);
    }
    let mut due = checkpoints.iter().peekable();
    let mut tree = Frontier::new();
    // What each account must be shown, as the entries say (the index
    // `GET /v1/audit/account` reads is checked against it below).
    let mut shown: BTreeMap<UserId, Vec<u64>> = BTreeMap::new();
    let check_due =
        |tree: &Frontier,
         due: &mut std::iter::Peekable<std::slice::Iter<'_, tlog::VerifiedCheckpoint>>|
         -> Result<(), VerifyError> {
            while let Some(c) = due.next_if(|c| c.size() == tree.size()) {
                if c.root() != &tree.root() {
                    return Err(VerifyError::RootMismatch { size: c.size() });
                }
            }
            Ok(())
        };
    check_due(&tree, &mut due)?;
    loop {
        let page = store.audit_entries(tree.size(), VERIFY_PAGE)?;
        if page.is_empty() {
            break;
        }
        for (at, bytes) in page {
            if at != tree.size() {
                return Err(VerifyError::Missing {
                    expected: tree.size(),
                    found: at,
                });
            }
            let entry = Entry::decode(&bytes)
                .map_err(|e| VerifyError::Unreadable { at, code: e.code() })?;
            if entry.index != at {
                return Err(VerifyError::Misplaced {
                    at,
                    claims: entry.index,
                });
            }
            if let Some(user) = entry.shown_to() {
                shown.entry(user.clone()).or_default().push(at);
            }
            tree.push(&bytes);
            check_due(&tree, &mut due)?;
        }
    }
    if let Some(c) = due.next() {
        return Err(VerifyError::Truncated {
            signed: c.size(),
            entries: tree.size(),
        });
    }
    let stored = load_tree(store).map_err(|_| VerifyError::NodesDiffer)?;
    if stored != tree {
        return Err(VerifyError::NodesDiffer);
    }
    for (user, logged) in shown {
        let listed = store.audit_account(&user, 0, tree.size(), logged.len() + 1)?;
        if listed != logged {
            return Err(VerifyError::AccountIndex {
                user: user.to_string(),
                listed,
                logged,
            });
        }
    }
    Ok(Verified {
        entries: tree.size(),
        checkpoints: checkpoints.len() as u64,
        newest_checkpoint: checkpoints.last().map_or(0, |c| c.size()),
        root: hex::encode(tree.root()),
    })
}
