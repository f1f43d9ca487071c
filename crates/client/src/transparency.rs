//! Key transparency over the network: every root the device is shown goes
//! through its ledger (append-only proofs), every user it deals with is
//! looked up with a proof, and its own user's history is checked on sync.
//! What the device then believes is the engine's ([`crate::engine::identity`]).
//!
//! ```text
//! signed root ──verify(pinned key)──▶ ledger: same epoch+hash │ newer + append-only proof
//!                                       rollback / split view ─▶ REFUSE + ALERT (evidence)
//! lookup proof ──verify(root)──▶ identity + devices with their status (engine)
//!     before adding anyone (claim), before showing anything (sync), before writing
//! history proof (own user, every sync) ──▶ a device or key not seen before ─▶ ALERT
//! ```

use crate::alert::AlertKind;
use crate::client::Client;
use crate::engine::identity::Proven;
use crate::engine::roots::directory_key;
use crate::error::{ClientError, Result};
use reqwest::Method;
use std::collections::BTreeMap;
use valise_directory::{
    DeviceStatus, DirectoryError, RootLedger, SignedRoot, Step, VerifiedRoot, audit_span,
    verify_history, verify_lookup, verify_root,
};
use valise_proto::api::{DirectoryAudit, DirectoryProof};
use valise_proto::{DeviceId, UserId};

impl From<DirectoryError> for ClientError {
    fn from(e: DirectoryError) -> Self {
        ClientError::Directory(format!("{} ({})", e, e.code()))
    }
}

impl Client {
    /// Pins the directory key and first root at enrolment.
    pub(crate) fn pin_directory(&self, key: &[u8], root: &[u8]) -> Result<()> {
        let key = directory_key(key)?;
        let verified = verify_root(&SignedRoot::from_bytes(root)?, &key)?;
        let mut ledger = RootLedger::new();
        ledger.accept(&verified)?;
        let json = serde_json::to_string(&ledger)
            .map_err(|e| ClientError::Home(format!("directory ledger: {e}")))?;
        self.engine.home.pin_directory(&key.0, &json)?;
        self.engine.keep_ledger(&ledger, &verified, &[])
    }

    /// Verifies a root and moves the ledger to it (with an append-only proof
    /// from the last accepted root). A rollback, split view or bad signature
    /// is refused and raises an alert carrying the signed roots.
    pub(crate) async fn accept_root(&mut self, root: &[u8]) -> Result<VerifiedRoot> {
        let (key, mut ledger) = self.engine.directory_state()?;
        let signed = SignedRoot::from_bytes(root)?;
        let mut spanned = Vec::new();
        let outcome = match verify_root(&signed, &key) {
            Err(e) => Err(e),
            Ok(verified) => match ledger.check(&verified) {
                Ok(Step::Forward { from_epoch }) => {
                    let path = format!(
                        "/v1/directory/audit?from={from_epoch}&to={}",
                        verified.epoch()
                    );
                    let audit: DirectoryAudit =
                        self.call::<(), _>(Method::GET, &path, None).await?;
                    let advanced = ledger
                        .advance(&verified, Some(audit.proof.as_slice()))
                        .await;
                    if advanced.is_ok() {
                        spanned = audit_span(from_epoch, audit.proof.as_slice())?;
                    }
                    advanced.map(|_| verified)
                }
                Ok(_) => ledger.accept(&verified).map(|_| verified),
                Err(e) => Err(e),
            },
        };
        match outcome {
            Ok(verified) => {
                self.engine.keep_ledger(&ledger, &verified, &spanned)?;
                Ok(verified)
            }
            Err(e) => {
                let mut evidence = ledger.last().map(SignedRoot::to_bytes).unwrap_or_default();
                evidence.extend_from_slice(root);
                self.engine.raise(
                    AlertKind::DirectoryConflict,
                    None,
                    &format!("the server showed a directory root this device refuses: {e}"),
                    Some(&evidence),
                )?;
                Err(e.into())
            }
        }
    }

    /// Looks `user` up in the directory, verifies the proof against an
    /// accepted root, and hands what it proves to the engine.
    pub(crate) async fn prove_user(&mut self, user: &UserId) -> Result<Proven> {
        let path = format!("/v1/directory/lookup/{user}");
        let found: DirectoryProof = self.call::<(), _>(Method::GET, &path, None).await?;
        let root = self.accept_root(found.root.as_slice()).await?;
        let proven = verify_lookup(&root, user, found.proof.as_slice())?;
        self.engine
            .record_proven(user, &proven.devices, root.epoch())
    }

    /// Checks the whole history of this user's directory entry: each
    /// version must only have grown from the one before (a revocation
    /// undone, a device renumbered or re-keyed is a `directory_conflict`),
    /// a device or key this device has not seen before raises `new_device`
    /// — also one that was added and removed again between two checks — and
    /// a device revoked since the last check raises `device_revoked`. With
    /// `quiet` (at enrolment) it only learns what exists.
    pub(crate) async fn check_own_history(&mut self, quiet: bool) -> Result<usize> {
        let me = self.engine.me.user.clone();
        let path = format!("/v1/directory/history/{me}");
        let found: DirectoryProof = self.call::<(), _>(Method::GET, &path, None).await?;
        let root = self.accept_root(found.root.as_slice()).await?;
        let versions = verify_history(&root, &me, found.proof.as_slice())?;
        // Each device with its key, where it first appeared, and its
        // status in the newest version that lists it.
        let mut seen: BTreeMap<(DeviceId, Vec<u8>), (u64, Option<DeviceStatus>)> = BTreeMap::new();
        for v in &versions {
            let statuses = valise_directory::identity::devices(&me, &v.devices);
            for d in v.devices.devices() {
                let slot = seen
                    .entry((d.device, d.signature_key.0.clone()))
                    .or_insert((v.epoch, None));
                slot.1 = statuses.status(&d.device);
            }
        }
        let mut new = 0;
        for ((device, key), (epoch, status)) in seen {
            if self
                .engine
                .learn_own_device(&device, &key, status, epoch, quiet)?
            {
                new += 1;
            }
            if let Some(DeviceStatus::Revoked { by }) = status {
                self.engine.tell_revocation(&device, &key, by, quiet)?;
            }
        }
        // Each version only grew from the one before, and from what this
        // device kept: a violation is alerted (the entry is the server's
        // word against this device's memory), and the sync goes on.
        let encoded = versions
            .iter()
            .map(|v| v.devices.encode())
            .collect::<std::result::Result<Vec<_>, _>>()?;
        let kept = self.engine.home.directory_list(&me)?;
        let steps = kept
            .iter()
            .zip(encoded.last())
            .map(|(k, n)| (k.as_slice(), n.as_slice()));
        let pairs = encoded
            .windows(2)
            .map(|p| (p[0].as_slice(), p[1].as_slice()));
        for (old, new) in steps.chain(pairs) {
            if self.engine.check_growth(&me, old, new).is_err() {
                break;
            }
        }
        Ok(new)
    }
}

/// Digits of a safety code: 12 groups of 5.
const CODE_GROUPS: usize = 12;

impl Client {
    /// The safety code for this user and `peer`: derived from both users'
    /// proven identities (not their device lists: approving a device does
    /// not change it), the same on both sides, so two people who read it
    /// to each other over a trusted channel know no identity was swapped.
    pub async fn safety_code(&mut self, peer: &UserId) -> Result<String> {
        use sha2::{Digest, Sha512};
        let me = self.engine.me.user.clone();
        let mut ids = [
            (
                me.clone(),
                self.prove_user(&me).await?.devices.identity.key.0,
            ),
            (
                peer.clone(),
                self.prove_user(peer).await?.devices.identity.key.0,
            ),
        ];
        ids.sort();
        let mut h = Sha512::new();
        h.update(b"valise-safety-code-v2");
        for (user, key) in &ids {
            h.update((user.as_str().len() as u64).to_be_bytes());
            h.update(user.as_str());
            h.update((key.len() as u64).to_be_bytes());
            h.update(key);
        }
        let digest = h.finalize();
        Ok(digest
            .chunks(5)
            .take(CODE_GROUPS)
            .map(|c| {
                let n = c.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b));
                format!("{:05}", n % 100_000)
            })
            .collect::<Vec<_>>()
            .join(" "))
    }

    /// Records that the user compared `code` with `peer` out of band; false
    /// (and nothing recorded) if it is not the current safety code. A
    /// verified contact whose identity had changed can be written to again.
    pub async fn confirm_safety_code(&mut self, peer: &UserId, code: &str) -> Result<bool> {
        let expected = self.safety_code(peer).await?;
        let digits = valise_directory::identity::code_digits;
        if digits(code) != digits(&expected) {
            return Ok(false);
        }
        self.engine.mark_verified(peer)?;
        Ok(true)
    }
}
