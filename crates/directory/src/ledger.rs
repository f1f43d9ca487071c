//! The client's memory of the directory: the newest root it accepted.
//!
//! A client persists its [`RootLedger`] and passes every root it is shown
//! through it. A root older than the newest accepted one (rollback), or a
//! second root for the same epoch (split view), is refused with both signed
//! roots as evidence — signed by the server, so the evidence convinces a
//! third party. So is a root under another VRF key, which would move every
//! label and let the server start entries afresh. Moving to a newer epoch
//! needs an append-only proof ([`RootLedger::advance`]), so a server cannot
//! fork the history between two roots either.

use crate::error::DirectoryError;
use crate::root::{SignedRoot, VerifiedRoot};
use crate::verify::{order, verify_audit, verify_root};
use serde::{Deserialize, Serialize};

/// What accepting a root did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The ledger was empty: this is the first root (trust on first use).
    First,
    /// The epoch already accepted, with the same hash.
    Same,
    /// A newer epoch than `from_epoch`.
    Forward { from_epoch: u64 },
}

/// The newest accepted root. Serialisable (JSON or CBOR) for the client's
/// store.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootLedger {
    last: Option<SignedRoot>,
}

impl RootLedger {
    pub fn new() -> Self {
        Self::default()
    }

    /// The newest accepted root.
    pub fn last(&self) -> Option<&SignedRoot> {
        self.last.as_ref()
    }

    /// What accepting `root` would do, without changing the ledger. Refuses
    /// a rollback or split view, and a root under another directory key
    /// than the one the ledger's root verifies under.
    pub fn check(&self, root: &VerifiedRoot) -> Result<Step, DirectoryError> {
        let Some(last) = &self.last else {
            return Ok(Step::First);
        };
        verify_root(last, root.key())?;
        if let Some(conflict) = order(last, root.signed()) {
            return Err(conflict);
        }
        if root.epoch() == last.epoch() {
            Ok(Step::Same)
        } else {
            Ok(Step::Forward {
                from_epoch: last.epoch(),
            })
        }
    }

    /// Accepts `root` by epoch and hash alone: the caller has checked the
    /// append-only proof from [`RootLedger::last`] for a `Forward` step (or
    /// uses [`RootLedger::advance`], which does).
    pub fn accept(&mut self, root: &VerifiedRoot) -> Result<Step, DirectoryError> {
        let step = self.check(root)?;
        let fresher = self
            .last
            .as_ref()
            .is_none_or(|l| root.timestamp_ms() > l.timestamp_ms() || step != Step::Same);
        if fresher {
            self.last = Some(root.signed().clone());
        }
        Ok(step)
    }

    /// Accepts `root` after checking, for a newer epoch, the append-only
    /// proof from the last accepted root (`audit_proof` from the server's
    /// `audit(last.epoch, root.epoch)`). A missing proof for a forward step
    /// is refused.
    pub async fn advance(
        &mut self,
        root: &VerifiedRoot,
        audit_proof: Option<&[u8]>,
    ) -> Result<Step, DirectoryError> {
        let step = self.check(root)?;
        if let (Step::Forward { .. }, Some(last)) = (step, &self.last) {
            let proof = audit_proof.ok_or_else(|| {
                DirectoryError::BadProof("a newer epoch needs an append-only proof".into())
            })?;
            let last = verify_root(last, root.key())?;
            verify_audit(&last, root, proof).await?;
        }
        self.accept(root)
    }
}
