//! TEST ONLY (Cargo feature `adversary`): routes that make this server lie.
//! No authentication; never compiled into a release build. See
//! [`crate::adversary`].

use super::blocking;
use crate::adversary::{View, tampering};
use crate::directory::{ServerDirectory, device_list};
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;
use crate::store::{StoreError, Tamper};
use axum::Router;
use axum::extract::State;
use axum::routing::post;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use valise_directory::{
    DeviceEntry, DeviceList, Directory, DirectoryError, Identity, SqliteDirectoryStorage,
};
use valise_proto::api::ClaimedKeyPackage;
use valise_proto::bytes::Bytes;
use valise_proto::wire::EntryKind;
use valise_proto::{ConversationId, DeviceAddress, DeviceId, UserId};

/// Adds the `/adversary/...` routes.
pub fn routes(router: Router<AppState>) -> Router<AppState> {
    router
        .route("/adversary/serve-key", post(serve_key))
        .route("/adversary/rogue-device", post(rogue_device))
        .route("/adversary/fork-root", post(fork_root))
        .route("/adversary/fork", post(fork_conversation))
        .route("/adversary/inbox", post(inbox))
        .route("/adversary/drop", post(drop_entries))
        .route("/adversary/reorder", post(reorder))
        .route("/adversary/replay", post(replay))
        .route("/adversary/disk-full", post(disk_full))
        .route("/adversary/audit-endless", post(audit_endless))
        .route("/adversary/attestation", post(attestation))
        .route("/adversary/reset", post(reset))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServeKey {
    pub user: UserId,
    pub device: DeviceId,
    pub key_package: Bytes,
}

#[derive(Debug, Serialize)]
pub struct Done {
    pub ok: bool,
}

/// # POST /adversary/serve-key
///
/// A3: from now on, every claim of `user`'s key packages returns only this
/// one (as `device`'s, not last-resort); nothing is published.
pub async fn serve_key(
    State(state): State<AppState>,
    Json(req): Json<ServeKey>,
) -> Result<Json<Done>, ApiError> {
    state.adversary.serve_key(
        req.user,
        ClaimedKeyPackage {
            device: req.device,
            key_package: req.key_package,
            last_resort: false,
        },
    );
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RogueDevice {
    pub user: UserId,
    pub device: DeviceId,
    pub signature_key: Bytes,
    /// Publish the user's honest list again in the very next epoch.
    #[serde(default)]
    pub remove_next_epoch: bool,
}

#[derive(Debug, Serialize)]
pub struct RogueDeviceResult {
    /// Signed root of the epoch with the rogue device (`SignedRoot::to_bytes`).
    pub added: Bytes,
    /// Signed root of the epoch that removed it again, if asked.
    pub removed: Option<Bytes>,
}

/// # POST /adversary/rogue-device
///
/// A4/A6: really publishes `user`'s device list plus a rogue device (as
/// the server can: pending, signed by nobody); with `remove_next_epoch`,
/// the list without it in the next epoch.
pub async fn rogue_device(
    State(state): State<AppState>,
    Json(req): Json<RogueDevice>,
) -> Result<Json<RogueDeviceResult>, ApiError> {
    let honest = honest_list(&state, &req.user).await?;
    let with_rogue = with_devices(
        honest.as_ref(),
        true,
        vec![(req.device, req.signature_key.into_vec())],
    )?;
    let user = req.user.clone();
    let added = state
        .directory
        .call(move |d| async move { d.publish(vec![(user, with_rogue)]).await })
        .await?;
    let removed = match honest.filter(|_| req.remove_next_epoch) {
        Some(honest) => {
            let user = req.user.clone();
            Some(
                state
                    .directory
                    .call(move |d| async move { d.publish(vec![(user, honest)]).await })
                    .await?
                    .to_bytes()
                    .into(),
            )
        }
        None => None,
    };
    Ok(Json(RogueDeviceResult {
        added: added.to_bytes().into(),
        removed,
    }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PlantAttestation {
    pub user: UserId,
    pub attestation: Bytes,
}

/// # POST /adversary/attestation
///
/// Issue 11: puts any bytes in `user`'s entry as an attestation (one the
/// server signed itself, an expired one replayed), skipping every check
/// `valised admin publish-attestation` makes; published in the next epoch.
pub async fn attestation(
    State(state): State<AppState>,
    Json(req): Json<PlantAttestation>,
) -> Result<Json<Done>, ApiError> {
    let store = state.store.clone();
    let seq = blocking(move || {
        let keep_all = |_: &[u8]| false;
        let attestation = req.attestation.into_vec();
        store.add_attestation(
            &req.user,
            &attestation,
            &keep_all,
            usize::MAX,
            crate::now_ms(),
        )?;
        Ok(store.mark_directory_pending(&req.user, crate::now_ms())?)
    })
    .await?;
    state.directory.wait_published(seq).await?;
    Ok(Json(Done { ok: true }))
}

/// `user`'s list as the directory publishes it; `None` for an unknown user.
async fn honest_list(state: &AppState, user: &UserId) -> Result<Option<DeviceList>, ApiError> {
    let (store, user) = (state.store.clone(), user.clone());
    blocking(move || match store.user(&user) {
        Ok(record) => Ok(Some(device_list(&record)?)),
        Err(StoreError::NotFound) => Ok(None),
        Err(e) => Err(e.into()),
    })
    .await
}

/// `devices` published under `honest`'s identity as the server alone can
/// (numbered next, approved by nobody: pending), after `honest`'s other
/// devices if `keep`; for a user with no list, the first one founds it.
fn with_devices(
    honest: Option<&DeviceList>,
    keep: bool,
    devices: Vec<(DeviceId, Vec<u8>)>,
) -> Result<DeviceList, DirectoryError> {
    let identity = match (honest, devices.first()) {
        (Some(list), _) => list.identity().clone(),
        (None, Some((_, key))) => Identity {
            key: valise_directory::SignatureKey(key.clone()),
            generation: 1,
        },
        (None, None) => {
            return Err(DirectoryError::InvalidRequest(
                "no device to publish".into(),
            ));
        }
    };
    let mut entries: Vec<DeviceEntry> = honest
        .filter(|_| keep)
        .map(|list| {
            list.devices()
                .iter()
                .filter(|e| devices.iter().all(|(id, _)| *id != e.device))
                .cloned()
                .collect()
        })
        .unwrap_or_default();
    // Numbers stay 0, 1, 2, … (lists with a gap are refused by everyone).
    let first = if keep {
        honest.map_or(0, DeviceList::next_number)
    } else {
        0
    };
    for (number, (id, key)) in (first..).zip(devices) {
        entries.push(DeviceEntry::new(id, key, number, identity.generation));
    }
    DeviceList::new(identity, entries)
}

#[derive(Debug, Clone, Copy, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ForkMode {
    Fork,
    Split,
    Rollback,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SubstituteDevice {
    pub device: DeviceId,
    pub signature_key: Bytes,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkRoot {
    /// The device to deceive (`user/device`).
    pub device: DeviceAddress,
    pub mode: ForkMode,
    /// Rollback: the older epoch to show.
    #[serde(default)]
    pub epoch: Option<u64>,
    /// Fork, split: the user whose entry differs...
    #[serde(default)]
    pub user: Option<UserId>,
    /// ...and their devices there (fork: empty is the honest list).
    #[serde(default)]
    pub devices: Vec<SubstituteDevice>,
}

#[derive(Debug, Serialize)]
pub struct ForkRootResult {
    /// The root the device is shown from now on (`SignedRoot::to_bytes`).
    pub root: Bytes,
}

/// # POST /adversary/fork-root
///
/// A5: from now on, `device`'s `directory/root`, `lookup` and `history`
/// answers come from
/// - `mode: "fork"`: a second directory with the same VRF and root keys
///   holding every user's current list, `user`'s replaced by `devices`,
///   padded to the honest epoch number (audits stay honest);
/// - `mode: "split"`: a copy of the honest directory as it is now, where
///   `user`'s list is replaced by `devices` in one new epoch of the copy
///   only; its `audit` answers come from the copy too, so the device's
///   own checks advance consistently while everyone else stays on the
///   honest directory, whose next epoch has another hash;
/// - `mode: "rollback"`: the root of an older `epoch`, with honest proofs.
pub async fn fork_root(
    State(state): State<AppState>,
    Json(req): Json<ForkRoot>,
) -> Result<Json<ForkRootResult>, ApiError> {
    let view = match req.mode {
        ForkMode::Rollback => {
            let epoch = req
                .epoch
                .ok_or_else(|| ApiError::bad_request("rollback needs an epoch"))?;
            View::Rollback(epoch)
        }
        ForkMode::Fork => View::Fork(Arc::new(fork(&state, req.user, req.devices).await?)),
        ForkMode::Split => View::Split(Arc::new(split(&state, req.user, req.devices).await?)),
    };
    let root = match &view {
        View::Rollback(epoch) => state.directory.root_of(*epoch)?,
        View::Fork(d) | View::Split(d) => {
            crate::directory::on_blocking(d.clone(), |d| async move { d.root().await }).await?
        }
    };
    state.adversary.show(req.device, view);
    Ok(Json(ForkRootResult {
        root: root.to_bytes().into(),
    }))
}

fn substitutes(devices: Vec<SubstituteDevice>) -> Vec<(DeviceId, Vec<u8>)> {
    devices
        .into_iter()
        .map(|d| (d.device, d.signature_key.into_vec()))
        .collect()
}

/// A second directory with the honest one's keys and different content.
async fn fork(
    state: &AppState,
    user: Option<UserId>,
    devices: Vec<SubstituteDevice>,
) -> Result<ServerDirectory, ApiError> {
    let honest_epoch = state.directory.root().await?.epoch();
    let store = state.store.clone();
    let users = blocking(move || Ok(store.list_users()?)).await?;
    let mut changes = users
        .iter()
        .map(|u| Ok((u.user.clone(), device_list(u)?)))
        .collect::<Result<Vec<_>, DirectoryError>>()?;
    if let Some(user) = user.filter(|_| !devices.is_empty()) {
        let honest = changes
            .iter()
            .position(|(u, _)| *u == user)
            .map(|i| changes.remove(i).1);
        changes.push((
            user,
            with_devices(honest.as_ref(), false, substitutes(devices))?,
        ));
    }
    let keys = state.directory.keys().clone();
    Ok(state
        .directory
        .call(move |_| async move {
            let storage = Arc::new(SqliteDirectoryStorage::in_memory()?);
            let fork = Directory::open_with_vrf(storage, keys.signer(), keys.vrf()).await?;
            let mut root = fork.publish(changes).await?;
            let mut i = 0u64;
            while root.epoch() < honest_epoch {
                let filler = UserId::parse(&format!("filler{i}@fork.invalid"))
                    .map_err(|e| DirectoryError::Internal(e.to_string()))?;
                let list = DeviceList::founded_by(DeviceId::from_bytes([0; 8]), vec![1; 32])?;
                root = fork.publish(vec![(filler, list)]).await?;
                i += 1;
            }
            Ok(fork)
        })
        .await?)
}

/// A copy of the honest directory (a snapshot of its tables) where
/// `user`'s list is `devices` from one new epoch on.
async fn split(
    state: &AppState,
    user: Option<UserId>,
    devices: Vec<SubstituteDevice>,
) -> Result<ServerDirectory, ApiError> {
    let user = user.ok_or_else(|| ApiError::bad_request("split needs a user"))?;
    if devices.is_empty() {
        return Err(ApiError::bad_request("split needs devices"));
    }
    let honest = honest_list(state, &user).await?;
    let changed = with_devices(honest.as_ref(), false, substitutes(devices))?;
    let st = state.clone();
    let copy = blocking(move || Ok(tampering(&st)?.snapshot()?)).await?;
    let keys = state.directory.keys().clone();
    Ok(state
        .directory
        .call(move |_| async move {
            let storage = Arc::new(SqliteDirectoryStorage::open(&copy)?);
            let split = Directory::open_with_vrf(storage, keys.signer(), keys.vrf()).await?;
            split.publish(vec![(user, changed)]).await?;
            Ok(split)
        })
        .await?)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ForkConversation {
    pub conversation: ConversationId,
    /// The devices that will follow the second commit.
    pub victims: Vec<DeviceAddress>,
}

/// # POST /adversary/fork
///
/// A10: the next commit accepted in `conversation` is held back from the
/// victims; the next commit for that same epoch (a victim's, made without
/// knowing of the first) is accepted too. The victims get the second
/// before the first, everyone else the first before the second.
pub async fn fork_conversation(
    State(state): State<AppState>,
    Json(req): Json<ForkConversation>,
) -> Json<Done> {
    state.adversary.plan_fork(req.conversation, req.victims);
    Json(Done { ok: true })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inbox {
    pub device: DeviceAddress,
}

#[derive(Debug, Serialize)]
pub struct InboxListing {
    pub entries: Vec<ListedEntry>,
}

#[derive(Debug, Serialize)]
pub struct ListedEntry {
    pub seq: u64,
    /// `commit`, `welcome` or `application`.
    pub kind: &'static str,
    pub conversation: ConversationId,
    pub sender: DeviceAddress,
}

/// # POST /adversary/inbox
///
/// What waits in `device`'s inbox (no content), to pick entries to tamper with.
pub async fn inbox(
    State(state): State<AppState>,
    Json(req): Json<Inbox>,
) -> Result<Json<InboxListing>, ApiError> {
    let entries = blocking(move || Ok(tampering(&state)?.waiting(&req.device)?)).await?;
    let entries = entries
        .into_iter()
        .map(|e| ListedEntry {
            seq: e.seq,
            kind: match e.kind {
                EntryKind::Commit => "commit",
                EntryKind::Welcome => "welcome",
                EntryKind::Application => "application",
            },
            conversation: e.conversation,
            sender: e.sender,
        })
        .collect();
    Ok(Json(InboxListing { entries }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Entries {
    pub device: DeviceAddress,
    pub seqs: Vec<u64>,
}

/// The log rows behind `device`'s entries `seqs`, in that order.
fn rows(state: &AppState, device: &DeviceAddress, seqs: &[u64]) -> Result<Vec<u64>, ApiError> {
    let mut out = Vec::with_capacity(seqs.len());
    for &seq in seqs {
        let found = tampering(state)?.tamper(&Tamper::EntryOf {
            device: device.clone(),
            seq,
        })?;
        out.push(
            *found
                .first()
                .ok_or_else(|| ApiError::bad_request(format!("no entry {seq} for {device}")))?,
        );
    }
    Ok(out)
}

/// # POST /adversary/drop
///
/// A7: deletes these entries of `device`'s inbox for good.
pub async fn drop_entries(
    State(state): State<AppState>,
    Json(req): Json<Entries>,
) -> Result<Json<Done>, ApiError> {
    blocking(move || {
        for row in rows(&state, &req.device, &req.seqs)? {
            tampering(&state)?.tamper(&Tamper::Withhold {
                row,
                devices: vec![req.device.clone()],
            })?;
        }
        Ok(())
    })
    .await?;
    Ok(Json(Done { ok: true }))
}

/// # POST /adversary/reorder
///
/// A7: moves these entries of `device`'s inbox to its end, in the order given.
pub async fn reorder(
    State(state): State<AppState>,
    Json(req): Json<Entries>,
) -> Result<Json<Done>, ApiError> {
    let wakeups = state.wakeups.clone();
    let device = req.device.clone();
    blocking(move || {
        let devices = vec![req.device.clone()];
        let tamper = tampering(&state)?;
        for row in rows(&state, &req.device, &req.seqs)? {
            let devices = devices.clone();
            tamper.tamper(&Tamper::Withhold {
                row,
                devices: devices.clone(),
            })?;
            tamper.tamper(&Tamper::Deliver { row, devices })?;
        }
        Ok(())
    })
    .await?;
    wakeups.poke([&device]);
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Replay {
    /// Whose inbox entry to copy...
    pub from: DeviceAddress,
    pub seq: u64,
    /// ...to the end of which inboxes (the sender's own: reflection).
    pub to: Vec<DeviceAddress>,
}

/// # POST /adversary/replay
///
/// A8: delivers a stored message again.
pub async fn replay(
    State(state): State<AppState>,
    Json(req): Json<Replay>,
) -> Result<Json<Done>, ApiError> {
    let wakeups = state.wakeups.clone();
    let to = req.to.clone();
    blocking(move || {
        for row in rows(&state, &req.from, &[req.seq])? {
            tampering(&state)?.tamper(&Tamper::Deliver {
                row,
                devices: req.to.clone(),
            })?;
        }
        Ok(())
    })
    .await?;
    wakeups.poke(to.iter());
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DiskFull {
    pub full: bool,
}

/// # POST /adversary/disk-full
///
/// F3: the database cannot grow any more (`full: true`), as on a full
/// disk, or can again.
pub async fn disk_full(
    State(state): State<AppState>,
    Json(req): Json<DiskFull>,
) -> Result<Json<Done>, ApiError> {
    blocking(move || Ok(tampering(&state)?.tamper(&Tamper::DiskFull(req.full))?)).await?;
    Ok(Json(Done { ok: true }))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEndless {
    on: bool,
}

/// # POST /adversary/audit-endless
///
/// `{"on": true}`: every `GET /v1/audit/account` answer says more entries
/// follow, and shows none.
pub async fn audit_endless(
    State(state): State<AppState>,
    Json(req): Json<AuditEndless>,
) -> Json<Done> {
    state.adversary.set_endless_audit(req.on);
    Json(Done { ok: true })
}

/// # POST /adversary/reset
///
/// Turns every switch off (published rogue devices stay published).
pub async fn reset(State(state): State<AppState>) -> Json<Done> {
    state.adversary.reset();
    Json(Done { ok: true })
}
