//! Which devices may do what, at the cost of a hash lookup per request: the
//! revoked devices (refused at authentication) and the approved ones (the
//! only ones that may write: create conversations, commit, send).
//!
//! The store's `status` column is the truth. This process changes it on
//! enrolment, approval and revocation by a user, and updates these sets at
//! once. `valised admin revoke` changes it from another process, so a
//! background task re-reads the revoked devices whenever their count moves
//! (checked every [`REFRESH_EVERY`]; revocations only ever add): a device
//! the administrator revokes is refused within about that long. A device
//! moves from pending to approved only through
//! this process, so the approved set is a cache filled on first use that
//! never goes stale (a revocation is checked before it).

use crate::background::Background;
use crate::error::ApiError;
use crate::store::{Status, Store, StoreError};
use std::collections::HashSet;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;
use valise_proto::DeviceAddress;

/// How often the revoked devices are checked for news.
pub const REFRESH_EVERY: Duration = Duration::from_millis(500);
/// Most approved devices cached; past it the cache starts over.
const MAX_APPROVED: usize = 100_000;

/// The sets, shared by every request.
#[derive(Debug, Default)]
pub struct Standing {
    revoked: RwLock<HashSet<DeviceAddress>>,
    /// The store's count of revoked devices at the last refresh.
    revoked_count: Mutex<Option<u64>>,
    approved: RwLock<HashSet<DeviceAddress>>,
}

impl Standing {
    /// Refuses a revoked device with `device_revoked`.
    pub fn check_not_revoked(&self, device: &DeviceAddress) -> Result<(), ApiError> {
        let revoked = self.revoked.read().unwrap_or_else(|p| p.into_inner());
        if revoked.contains(device) {
            return Err(ApiError::device_revoked());
        }
        Ok(())
    }

    /// Records a revocation this process stored.
    pub fn revoke(&self, device: &DeviceAddress) {
        self.approved
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(device);
        self.revoked
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(device.clone());
    }

    /// Records an approval this process stored.
    pub fn approve(&self, device: &DeviceAddress) {
        let mut approved = self.approved.write().unwrap_or_else(|p| p.into_inner());
        if approved.len() >= MAX_APPROVED {
            approved.clear();
        }
        approved.insert(device.clone());
    }

    /// Refuses a device that may not write: `device_pending` while it waits
    /// for an approval, `device_revoked` once revoked. Reads the store only
    /// for a device not known approved yet.
    pub async fn require_approved(
        &self,
        store: &Arc<dyn Store>,
        device: &DeviceAddress,
    ) -> Result<(), ApiError> {
        self.check_not_revoked(device)?;
        if self
            .approved
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .contains(device)
        {
            return Ok(());
        }
        let (store, d) = (store.clone(), device.clone());
        let record = tokio::task::spawn_blocking(move || store.device(&d)).await??;
        match record.map(|r| r.status) {
            Some(Status::Approved) => {
                self.approve(device);
                Ok(())
            }
            Some(Status::Pending) => Err(ApiError::device_pending()),
            Some(Status::Revoked) => Err(ApiError::device_revoked()),
            None => Err(ApiError::unauthorized()),
        }
    }

    /// Re-reads the revoked devices if their count changed (also called at
    /// once after an identity reset, which revokes devices in bulk).
    pub fn refresh(&self, store: &dyn Store) -> Result<(), StoreError> {
        let count = store.revoked_count()?;
        let mut seen = self.revoked_count.lock().unwrap_or_else(|p| p.into_inner());
        if *seen == Some(count) {
            return Ok(());
        }
        let all = store.revoked_devices()?;
        for device in &all {
            let new = !self
                .revoked
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .contains(device);
            if new {
                tracing::info!(%device, "device revoked: refusing its tokens");
                self.revoke(device);
            }
        }
        *seen = Some(count);
        Ok(())
    }
}

/// Starts the refresh loop (the first refresh runs at once) among the
/// server's background tasks.
pub fn start(store: Arc<dyn Store>, standing: Arc<Standing>, background: &Background) {
    let mut stop = background.signal();
    background.spawn("revoked devices refresh", async move {
        let mut tick = tokio::time::interval(REFRESH_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                () = stop.stopped() => return,
            }
            let (store, standing) = (store.clone(), standing.clone());
            match tokio::task::spawn_blocking(move || standing.refresh(&*store)).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "reading revoked devices failed"),
                Err(e) => tracing::warn!(error = %e, "revoked devices task failed"),
            }
        }
    });
}
