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
    DeviceStatus, DirectoryError, DirectoryKey, RootLedger, SignedRoot, Step, VerifiedRoot,
    audit_span, verify_history, verify_lookup, verify_root,
};
use valise_proto::api::{DirectoryAudit, DirectoryProof};
use valise_proto::limits::MAX_AUDIT_SPAN;
use valise_proto::{DeviceId, UserId};

impl From<DirectoryError> for ClientError {
    fn from(e: DirectoryError) -> Self {
        ClientError::Directory(format!("{} ({})", e, e.code()))
    }
}

/// Moves a ledger to a newer root one append-only proof at a time: a
/// device (or an auditor) more than [`MAX_AUDIT_SPAN`] epochs behind asks
/// for the proofs in chunks, each ending on a root the server signs for
/// that epoch, rather than for one span the server refuses (and staying
/// stuck behind for good).
pub(crate) struct CatchUp {
    /// Where the ledger stands.
    at: u64,
    target: VerifiedRoot,
    /// Each epoch's root hash the proofs went through (`audit_span`).
    spanned: Vec<(u64, [u8; 32])>,
}

impl CatchUp {
    /// From the ledger's `from_epoch` to `target`, a newer root.
    pub(crate) fn new(from_epoch: u64, target: VerifiedRoot) -> Self {
        Self {
            at: from_epoch,
            target,
            spanned: Vec::new(),
        }
    }

    /// The epochs of the next proof to ask for, or `None` at the target.
    fn next(&self) -> Option<(u64, u64)> {
        // Saturating: both epochs are the server's, and may be near u64::MAX.
        (self.at < self.target.epoch()).then(|| {
            let to = self.at.saturating_add(MAX_AUDIT_SPAN);
            (self.at, to.min(self.target.epoch()))
        })
    }

    /// The request for the next proof, or `None` at the target.
    pub(crate) fn next_request(&self) -> Option<String> {
        self.next()
            .map(|(from, to)| format!("/v1/directory/audit?from={from}&to={to}"))
    }

    /// Checks the server's answer to [`CatchUp::next_request`] and moves
    /// `ledger` to its end: the target, or on the way the root the server
    /// signed for the chunk's last epoch.
    pub(crate) async fn advance(
        &mut self,
        ledger: &mut RootLedger,
        key: &DirectoryKey,
        audit: &DirectoryAudit,
    ) -> std::result::Result<(), DirectoryError> {
        let Some((from, to)) = self.next() else {
            return Ok(());
        };
        let on_the_way;
        let end = if to == self.target.epoch() {
            &self.target
        } else {
            on_the_way = verify_root(&SignedRoot::from_bytes(audit.to.as_slice())?, key)?;
            if on_the_way.epoch() != to {
                return Err(DirectoryError::BadProof(format!(
                    "asked for a proof up to epoch {to}, the server signed epoch {}",
                    on_the_way.epoch()
                )));
            }
            &on_the_way
        };
        ledger.advance(end, Some(audit.proof.as_slice())).await?;
        self.spanned
            .extend(audit_span(from, audit.proof.as_slice())?);
        self.at = to;
        Ok(())
    }

    /// The target, and each epoch's root hash the proofs went through.
    pub(crate) fn finish(self) -> (VerifiedRoot, Vec<(u64, [u8; 32])>) {
        (self.target, self.spanned)
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
                    let mut steps = CatchUp::new(from_epoch, verified);
                    let mut advanced = Ok(());
                    while let Some(path) = steps.next_request() {
                        let audit: DirectoryAudit =
                            self.call::<(), _>(Method::GET, &path, None).await?;
                        advanced = steps.advance(&mut ledger, &key, &audit).await;
                        if advanced.is_err() {
                            break;
                        }
                    }
                    let (verified, passed) = steps.finish();
                    spanned = passed;
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use valise_directory::{
        DeviceList, Directory, DirectoryStorage, RootSigner, SqliteDirectoryStorage,
    };
    use valise_proto::DeviceId;

    const SEED: [u8; 32] = [7; 32];

    /// A device `MAX_AUDIT_SPAN + 10` epochs behind catches up in two
    /// proofs, neither spanning more than the server answers, and is then
    /// at the newest root.
    #[tokio::test]
    async fn a_ledger_further_behind_than_one_proof_spans_catches_up_in_chunks() {
        let storage = Arc::new(SqliteDirectoryStorage::in_memory().unwrap());
        let dir = Directory::open(storage.clone(), RootSigner::from_seed(&SEED))
            .await
            .unwrap();
        let signer = RootSigner::from_seed(&SEED);
        let key = signer.public_key();
        let mut newest = None;
        for n in 0..=MAX_AUDIT_SPAN + 10 {
            let user = UserId::parse(&format!("u{n}@mfa.example")).unwrap();
            let list = DeviceList::founded_by(DeviceId::from_bytes([1; 8]), vec![2; 32]).unwrap();
            newest = Some(dir.publish(vec![(user, list)]).await.unwrap());
        }
        let newest = verify_root(&newest.unwrap(), &key).unwrap();
        let first = storage.epoch_roots(1, 1).unwrap()[0].1;
        let mut ledger = RootLedger::new();
        let start = signer.sign(1, first, 0, dir.vrf_public_key());
        ledger.accept(&verify_root(&start, &key).unwrap()).unwrap();

        let mut steps = CatchUp::new(1, newest.clone());
        let mut asked = Vec::new();
        while let Some((from, to)) = steps.next() {
            // What the server answers (`valised`'s directory::audit).
            assert!(to - from <= MAX_AUDIT_SPAN, "{from}..{to}");
            let to_hash = storage.epoch_roots(to, to).unwrap()[0].1;
            let audit = DirectoryAudit {
                from: vec![].into(),
                to: signer
                    .sign(to, to_hash, 0, dir.vrf_public_key())
                    .to_bytes()
                    .into(),
                proof: dir.audit(from, to).await.unwrap().into(),
            };
            steps.advance(&mut ledger, &key, &audit).await.unwrap();
            asked.push((from, to));
        }
        let last = newest.epoch();
        assert_eq!(asked, [(1, 1 + MAX_AUDIT_SPAN), (1 + MAX_AUDIT_SPAN, last)]);
        let (target, spanned) = steps.finish();
        assert_eq!(target, newest);
        assert_eq!(ledger.last().map(SignedRoot::epoch), Some(last));
        assert_eq!(spanned.last().map(|s| s.0), Some(last));
    }
}
