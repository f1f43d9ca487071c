//! TEST ONLY (Cargo feature `adversary`, never in a release build): the
//! switches with which tests make this server lie, to check that clients
//! refuse and alert (THREATS.md A3-A6). The routes are in
//! `routes/adversary.rs`; the API handlers consult the switches here.
//!
//! - a key package served for a user instead of theirs, not published in
//!   the directory (A3);
//! - a view of the directory shown to one device only: a fork (same VRF and
//!   root keys, different content), a split (a copy of the honest directory
//!   that goes on differently, audits included) or the root of an older
//!   epoch (rollback) (A5);
//! - a fork of a conversation: two commits accepted for one epoch, each
//!   shown first to a different part of the members (A10);
//! - inbox entries dropped, reordered or replayed (A7, A8): plain store
//!   edits, in the routes.
//!
//! Rogue devices (A4, A6) need no switch: they are really published.

use crate::directory::{ProofKind as Kind, ServerDirectory, on_blocking};
use crate::error::ApiError;
use crate::state::AppState;
use crate::store::{AppliedCommit, ConversationRecord, LogWrite, LogWritten, Tamper, Tampering};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use valise_directory::{Proven, SignedRoot};
use valise_proto::api::{ClaimedKeyPackage, ConversationState};
use valise_proto::{ConversationId, DeviceAddress, UserId};

/// What one device is shown instead of the honest directory.
#[derive(Clone)]
pub enum View {
    /// Roots and proofs from another directory with the same keys.
    Fork(Arc<ServerDirectory>),
    /// Roots, proofs and audits from a copy of the honest directory that
    /// went on differently.
    Split(Arc<ServerDirectory>),
    /// The root of this (older) epoch, with honest proofs that therefore do
    /// not match it.
    Rollback(u64),
}

/// A conversation fork being staged (A10): the next commit the hub accepts
/// is held back from the victims; a victim's commit for the same epoch is
/// then accepted too, and the victims get it before the held one.
#[derive(Debug, Clone)]
struct ForkPlan {
    victims: Vec<DeviceAddress>,
    /// The first commit's log row, once held back.
    held: Option<u64>,
}

/// The adversary's switches.
#[derive(Default)]
pub struct Adversary {
    served_keys: Mutex<HashMap<UserId, ClaimedKeyPackage>>,
    views: Mutex<HashMap<DeviceAddress, View>>,
    forks: Mutex<HashMap<ConversationId, ForkPlan>>,
    /// `GET /v1/audit/account` answers "more follow" with no entry.
    endless_audit: std::sync::atomic::AtomicBool,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Adversary {
    /// From now on, claims for `user` return only `package`.
    pub fn serve_key(&self, user: UserId, package: ClaimedKeyPackage) {
        lock(&self.served_keys).insert(user, package);
    }

    /// The package to serve for `user`, if the adversary set one.
    pub fn served_key(&self, user: &UserId) -> Option<ClaimedKeyPackage> {
        lock(&self.served_keys).get(user).cloned()
    }

    /// From now on, `device` sees `view`.
    pub fn show(&self, device: DeviceAddress, view: View) {
        lock(&self.views).insert(device, view);
    }

    fn view(&self, device: &DeviceAddress) -> Option<View> {
        lock(&self.views).get(device).cloned()
    }

    /// Stages a fork of `conversation` against `victims`.
    pub fn plan_fork(&self, conversation: ConversationId, victims: Vec<DeviceAddress>) {
        let plan = ForkPlan {
            victims,
            held: None,
        };
        lock(&self.forks).insert(conversation, plan);
    }

    /// From now on (`on`), every `GET /v1/audit/account` answer says more
    /// entries follow and shows none.
    pub fn set_endless_audit(&self, on: bool) {
        self.endless_audit
            .store(on, std::sync::atomic::Ordering::SeqCst);
    }

    pub fn endless_audit(&self) -> bool {
        self.endless_audit.load(std::sync::atomic::Ordering::SeqCst)
    }

    /// Back to an honest server.
    pub fn reset(&self) {
        self.set_endless_audit(false);
        lock(&self.served_keys).clear();
        lock(&self.views).clear();
        lock(&self.forks).clear();
    }
}

/// The store's tampering side (set by `valised` for the adversary build).
pub fn tampering(state: &AppState) -> Result<&dyn Tampering, ApiError> {
    state
        .tamper
        .as_deref()
        .ok_or_else(|| ApiError::internal("this store cannot be tampered with"))
}

/// A commit the hub accepted in a conversation with a fork staged and
/// nothing held yet: written past the writer and withheld from the victims
/// before anyone is woken. Gives the commit back when no fork is staged.
pub fn fork_commit(
    state: &AppState,
    applied: AppliedCommit,
) -> Result<Option<AppliedCommit>, ApiError> {
    let mut forks = lock(&state.adversary.forks);
    let Some(plan) = forks
        .get_mut(&applied.conversation)
        .filter(|p| p.held.is_none())
    else {
        return Ok(Some(applied));
    };
    let tamper = tampering(state)?;
    let conversation = applied.conversation;
    let batch = state.store.write_log(vec![LogWrite::Commit(applied)])?;
    if let Some(LogWritten::Committed(r)) = batch.written.into_iter().next() {
        r?;
    }
    let latest = tamper.tamper(&Tamper::LatestCommit { conversation })?;
    if let Some(&row) = latest.first() {
        tamper.tamper(&Tamper::Withhold {
            row,
            devices: plan.victims.clone(),
        })?;
        plan.held = Some(row);
    }
    state.wakeups.poke(&batch.wake);
    Ok(None)
}

/// A commit for the epoch the hub has just left: with a fork staged and its
/// first commit held, accepts this one too. Everyone gets it (so the
/// others see it after the first), then the victims get the held first
/// one after it. Returns the answer.
pub fn accept_stale(
    state: &AppState,
    conv: &ConversationRecord,
    caller: &DeviceAddress,
    epoch: u64,
    commit: &[u8],
) -> Result<Option<ConversationState>, ApiError> {
    let Some(plan) = lock(&state.adversary.forks).remove(&conv.id) else {
        return Ok(None);
    };
    let Some(held) = plan.held.filter(|_| epoch + 1 == conv.epoch) else {
        return Ok(None);
    };
    let tamper = tampering(state)?;
    let second = tamper.tamper(&Tamper::StoreCommit {
        conversation: conv.id,
        sender: caller.clone(),
        commit: commit.to_vec(),
        now_ms: crate::now_ms(),
    })?;
    for row in second {
        tamper.tamper(&Tamper::Deliver {
            row,
            devices: conv.roster.clone(),
        })?;
    }
    tamper.tamper(&Tamper::Deliver {
        row: held,
        devices: plan.victims,
    })?;
    state.wakeups.poke(&conv.roster);
    tracing::warn!(conversation = %conv.id, epoch, "ADVERSARY: second commit accepted for one epoch");
    let answer = ConversationState {
        id: conv.id,
        epoch: epoch + 1,
        members: conv.roster.clone(),
    };
    Ok(Some(answer))
}

/// The root the adversary shows `caller`, if any.
pub async fn root_for(
    state: &AppState,
    caller: &DeviceAddress,
) -> Option<Result<SignedRoot, ApiError>> {
    Some(match state.adversary.view(caller)? {
        View::Fork(fork) | View::Split(fork) => {
            on_blocking(fork, |d| async move { d.root().await })
                .await
                .map_err(Into::into)
        }
        View::Rollback(epoch) => state.directory.root_of(epoch).map_err(Into::into),
    })
}

/// The proof the adversary shows `caller`, if any.
pub async fn proof_for(
    state: &AppState,
    caller: &DeviceAddress,
    user: &UserId,
    kind: Kind,
) -> Option<Result<Proven, ApiError>> {
    let view = state.adversary.view(caller)?;
    let user = user.clone();
    Some(
        async move {
            match view {
                View::Fork(fork) | View::Split(fork) => {
                    Ok(on_blocking(fork, move |d| async move {
                        match kind {
                            Kind::Lookup => d.lookup(&user).await,
                            Kind::History => d.history(&user).await,
                        }
                    })
                    .await?)
                }
                View::Rollback(epoch) => {
                    let mut p = match kind {
                        Kind::Lookup => state.directory.lookup(user).await?,
                        Kind::History => state.directory.history(user).await?,
                    };
                    p.root = state.directory.root_of(epoch)?;
                    Ok(p)
                }
            }
        }
        .await,
    )
}

/// The audit the adversary shows `caller`, if any: a split view's own.
pub async fn audit_for(
    state: &AppState,
    caller: &DeviceAddress,
    from: u64,
    to: u64,
) -> Option<Result<(SignedRoot, SignedRoot, Vec<u8>), ApiError>> {
    let View::Split(split) = state.adversary.view(caller)? else {
        return None;
    };
    let signer = state.directory.keys().signer();
    Some(
        crate::directory::audit(&split, &signer, from, to)
            .await
            .map_err(Into::into),
    )
}
