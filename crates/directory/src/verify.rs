//! The client's side: check signed roots and proofs, with no I/O.
//!
//! Lookup and history proofs are checked by `akd_core`'s verifiers alone.
//! The append-only check uses akd's auditor, which rebuilds the changed part
//! of the tree in memory (no storage, no network), and is `async` only
//! because akd's tree code is.

use crate::config::Config;
use crate::entry::DeviceList;
use crate::error::DirectoryError;
use crate::root::{DirectoryKey, SignedRoot, VerifiedRoot};
use crate::wire;
use akd::verify::history::HistoryVerificationParams;
use akd::{AkdLabel, HistoryParams};
use valise_proto::UserId;

/// One proven version of a user's device list.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProvenList {
    /// The epoch this version was published in.
    pub epoch: u64,
    /// 1 for the first list ever published for the user, then +1 per change.
    pub version: u64,
    pub devices: DeviceList,
}

fn bad(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::BadProof(e.to_string())
}

/// Checks the server's signature on a root under the pinned directory key.
pub fn verify_root(root: &SignedRoot, key: &DirectoryKey) -> Result<VerifiedRoot, DirectoryError> {
    root.check_signature(key)?;
    Ok(VerifiedRoot {
        signed: root.clone(),
        key: *key,
    })
}

/// Checks a lookup proof: `user`'s device list as of `root` is the one
/// returned, and it is the latest version.
pub fn verify_lookup(
    root: &VerifiedRoot,
    user: &UserId,
    proof: &[u8],
) -> Result<ProvenList, DirectoryError> {
    let proof = wire::decode_lookup(proof)?;
    let result = akd::verify::lookup::lookup_verify::<Config>(
        root.signed.vrf_public_key(),
        *root.root_hash(),
        root.epoch(),
        AkdLabel::from(user.as_str()),
        proof,
    )
    .map_err(bad)?;
    Ok(ProvenList {
        epoch: result.epoch,
        version: result.version,
        devices: DeviceList::decode(&result.value.0)?,
    })
}

/// Checks a complete history proof: every device list ever published for
/// `user` up to `root`, oldest first, with nothing left out (versions 1 to
/// the latest, and no later version). A device added and removed again
/// between two checks is therefore still seen.
pub fn verify_history(
    root: &VerifiedRoot,
    user: &UserId,
    proof: &[u8],
) -> Result<Vec<ProvenList>, DirectoryError> {
    let proof = wire::decode_history(proof)?;
    let results = akd::verify::history::key_history_verify::<Config>(
        root.signed.vrf_public_key(),
        *root.root_hash(),
        root.epoch(),
        AkdLabel::from(user.as_str()),
        proof,
        HistoryVerificationParams::Default {
            history_params: HistoryParams::Complete,
        },
    )
    .map_err(bad)?;
    let mut out = results
        .into_iter()
        .map(|r| {
            Ok(ProvenList {
                epoch: r.epoch,
                version: r.version,
                devices: DeviceList::decode(&r.value.0)?,
            })
        })
        .collect::<Result<Vec<_>, DirectoryError>>()?;
    out.sort_by_key(|p| p.version);
    Ok(out)
}

/// Checks that `new` only appended to `old`: no entry was changed or
/// removed in between. Both roots must already be verified. The same epoch
/// with the same hash needs no proof; an older `new` is a rollback and a
/// different hash for the same epoch a split view.
pub async fn verify_audit(
    old: &VerifiedRoot,
    new: &VerifiedRoot,
    proof: &[u8],
) -> Result<(), DirectoryError> {
    if let Some(conflict) = order(old.signed(), new.signed()) {
        return Err(conflict);
    }
    if old.epoch() == new.epoch() {
        return Ok(());
    }
    let (hashes, proof) = wire::decode_audit(proof)?;
    let span = new.epoch() - old.epoch();
    // The epochs are compared lazily and only after the hash count (bounded
    // by the proof's size) matched: both roots are the server's, and a span
    // of 2^63 epochs must not become a 2^63-element vector (found writing
    // the `directory_proofs` fuzz target; `tests/fuzz_seeds.rs` pins it).
    if u64::try_from(hashes.len()).ok() != span.checked_add(1)
        || hashes.first() != Some(old.root_hash())
        || hashes.last() != Some(new.root_hash())
        || !proof.epochs.iter().copied().eq(old.epoch()..new.epoch())
    {
        return Err(bad(format!(
            "audit proof does not span epochs {} to {}",
            old.epoch(),
            new.epoch()
        )));
    }
    akd::auditor::audit_verify::<Config>(hashes, proof)
        .await
        .map_err(bad)
}

/// Rollback, split view or VRF key change between an accepted root and an
/// offered one.
pub(crate) fn order(seen: &SignedRoot, offered: &SignedRoot) -> Option<DirectoryError> {
    let boxed = || (Box::new(seen.clone()), Box::new(offered.clone()));
    if offered.vrf_public_key() != seen.vrf_public_key() {
        let (seen, offered) = boxed();
        Some(DirectoryError::VrfKeyChanged { seen, offered })
    } else if offered.epoch() < seen.epoch() {
        let (seen, offered) = boxed();
        Some(DirectoryError::Rollback { seen, offered })
    } else if offered.epoch() == seen.epoch() && offered.root_hash() != seen.root_hash() {
        let (seen, offered) = boxed();
        Some(DirectoryError::SplitView { seen, offered })
    } else {
        None
    }
}

/// The root hash of every epoch an append-only proof from `from_epoch`
/// spans, as `(epoch, hash)`: once [`verify_audit`] accepted the proof,
/// they are the roots of those epochs, which a client keeps to compare
/// with the roots members show it.
pub fn audit_span(from_epoch: u64, proof: &[u8]) -> Result<Vec<(u64, [u8; 32])>, DirectoryError> {
    let (hashes, _) = wire::decode_audit(proof)?;
    Ok((from_epoch..).zip(hashes).collect())
}
