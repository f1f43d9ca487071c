//! TEST ONLY (Cargo feature `adversary`, never in a release build): the
//! switches with which tests make this server lie, to check that clients
//! refuse and alert (THREATS.md A3-A6). The routes are in
//! `routes/adversary.rs`; the API handlers consult the switches here.
//!
//! - a key package served for a user instead of theirs, not published in
//!   the directory (A3);
//! - a view of the directory shown to one device only: a fork (same VRF and
//!   root keys, different content: split view) or the root of an older
//!   epoch (rollback) (A5).
//!
//! Rogue devices (A4, A6) need no switch: they are really published.

use crate::directory::{ProofKind as Kind, ServerDirectory, on_blocking};
use crate::error::ApiError;
use crate::state::AppState;
use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};
use valise_directory::{Proven, SignedRoot};
use valise_proto::api::ClaimedKeyPackage;
use valise_proto::{DeviceAddress, UserId};

/// What one device is shown instead of the honest directory.
#[derive(Clone)]
pub enum View {
    /// Roots and proofs from another directory with the same keys.
    Fork(Arc<ServerDirectory>),
    /// The root of this (older) epoch, with honest proofs that therefore do
    /// not match it.
    Rollback(u64),
}

/// The adversary's switches.
#[derive(Default)]
pub struct Adversary {
    served_keys: Mutex<HashMap<UserId, ClaimedKeyPackage>>,
    views: Mutex<HashMap<DeviceAddress, View>>,
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

    /// Back to an honest server.
    pub fn reset(&self) {
        lock(&self.served_keys).clear();
        lock(&self.views).clear();
    }
}

/// The root the adversary shows `caller`, if any.
pub async fn root_for(
    state: &AppState,
    caller: &DeviceAddress,
) -> Option<Result<SignedRoot, ApiError>> {
    Some(match state.adversary.view(caller)? {
        View::Fork(fork) => on_blocking(fork, |d| async move { d.root().await })
            .await
            .map_err(Into::into),
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
                View::Fork(fork) => Ok(on_blocking(fork, move |d| async move {
                    match kind {
                        Kind::Lookup => d.lookup(&user).await,
                        Kind::History => d.history(&user).await,
                    }
                })
                .await?),
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
