//! How proofs cross the wire.
//!
//! Lookup and history proofs are akd's own protobuf messages
//! (`akd_core::proto::specs::types::{LookupProof, HistoryProof}`), the
//! encoding akd publishes for interoperable clients and auditors.
//!
//! An audit proof also needs the root hash of every epoch it spans (akd's
//! verifier checks each consecutive step); it travels as
//!
//! ```text
//! "VAP1" || n (u32 BE) || n root hashes (32 each, epochs from..=to)
//!        || protobuf AppendOnlyProof
//! ```
//! The intermediate hashes need no signature: the first and last must equal
//! the two signed roots, and each step is proven append-only.

use crate::error::DirectoryError;
use akd::proto::specs::types as pb;
use protobuf::Message;

/// Largest lookup or history proof a client parses.
pub const MAX_PROOF_BYTES: usize = 4 * 1024 * 1024;

/// Largest audit proof a client or auditor parses.
pub const MAX_AUDIT_PROOF_BYTES: usize = 64 * 1024 * 1024;

const AUDIT_MAGIC: &[u8; 4] = b"VAP1";

fn bad(e: impl std::fmt::Display) -> DirectoryError {
    DirectoryError::BadProof(e.to_string())
}

fn check_len(bytes: &[u8], max: usize) -> Result<(), DirectoryError> {
    if bytes.len() > max {
        return Err(bad(format!("{} bytes, at most {max}", bytes.len())));
    }
    Ok(())
}

pub(crate) fn encode_lookup(p: &akd::LookupProof) -> Result<Vec<u8>, DirectoryError> {
    pb::LookupProof::from(p)
        .write_to_bytes()
        .map_err(|e| DirectoryError::Internal(e.to_string()))
}

pub(crate) fn decode_lookup(bytes: &[u8]) -> Result<akd::LookupProof, DirectoryError> {
    check_len(bytes, MAX_PROOF_BYTES)?;
    let msg = pb::LookupProof::parse_from_bytes(bytes).map_err(bad)?;
    let proof = akd::LookupProof::try_from(&msg).map_err(bad)?;
    canonical(bytes, encode_lookup(&proof))?;
    rooted(&proof.existence_proof)?;
    rooted(&proof.marker_proof)?;
    rooted(&proof.freshness_proof.longest_prefix_membership_proof)?;
    Ok(proof)
}

/// One proof has one encoding: what decodes must encode to the same bytes.
/// akd's decoding forgives some (a direction's high bits, siblings after the
/// first, unknown fields), so a changed proof could still verify as the
/// same proof (found by the property tests of `tests/fuzz_seeds.rs`).
fn canonical(bytes: &[u8], again: Result<Vec<u8>, DirectoryError>) -> Result<(), DirectoryError> {
    match again {
        Ok(again) if again == bytes => Ok(()),
        _ => Err(bad("not the canonical encoding")),
    }
}

/// A membership path starts at the root. akd's verifier never reads the
/// label of that first step (it hashes up to it, then stops), so any label
/// there verified: a changed proof was accepted as the same proof (found by
/// the property tests of `tests/fuzz_seeds.rs`). Refusing anything but the
/// root label leaves no unchecked bytes in the paths.
fn rooted(p: &akd::MembershipProof) -> Result<(), DirectoryError> {
    match p.sibling_proofs.first() {
        Some(step) if step.label != akd::NodeLabel::root() => {
            Err(bad("a membership path does not start at the root"))
        }
        _ => Ok(()),
    }
}

pub(crate) fn encode_history(p: &akd::HistoryProof) -> Result<Vec<u8>, DirectoryError> {
    pb::HistoryProof::from(p)
        .write_to_bytes()
        .map_err(|e| DirectoryError::Internal(e.to_string()))
}

pub(crate) fn decode_history(bytes: &[u8]) -> Result<akd::HistoryProof, DirectoryError> {
    check_len(bytes, MAX_PROOF_BYTES)?;
    let msg = pb::HistoryProof::parse_from_bytes(bytes).map_err(bad)?;
    let proof = akd::HistoryProof::try_from(&msg).map_err(bad)?;
    canonical(bytes, encode_history(&proof))?;
    for update in &proof.update_proofs {
        rooted(&update.existence_proof)?;
        update.previous_version_proof.iter().try_for_each(rooted)?;
    }
    proof
        .existence_of_past_marker_proofs
        .iter()
        .try_for_each(rooted)?;
    proof
        .non_existence_of_future_marker_proofs
        .iter()
        .try_for_each(|p| rooted(&p.longest_prefix_membership_proof))?;
    Ok(proof)
}

pub(crate) fn encode_audit(
    hashes: &[[u8; 32]],
    proof: &akd::AppendOnlyProof,
) -> Result<Vec<u8>, DirectoryError> {
    let body = pb::AppendOnlyProof::from(proof)
        .write_to_bytes()
        .map_err(|e| DirectoryError::Internal(e.to_string()))?;
    let n = u32::try_from(hashes.len())
        .map_err(|_| DirectoryError::InvalidRequest("too many epochs in one audit".into()))?;
    let mut out = Vec::with_capacity(8 + 32 * hashes.len() + body.len());
    out.extend_from_slice(AUDIT_MAGIC);
    out.extend_from_slice(&n.to_be_bytes());
    hashes.iter().for_each(|h| out.extend_from_slice(h));
    out.extend_from_slice(&body);
    Ok(out)
}

pub(crate) fn decode_audit(
    bytes: &[u8],
) -> Result<(Vec<[u8; 32]>, akd::AppendOnlyProof), DirectoryError> {
    check_len(bytes, MAX_AUDIT_PROOF_BYTES)?;
    let rest = bytes
        .strip_prefix(AUDIT_MAGIC)
        .ok_or_else(|| bad("not an audit proof"))?;
    let (n, rest) = rest
        .split_first_chunk::<4>()
        .ok_or_else(|| bad("audit proof truncated"))?;
    let n = usize::try_from(u32::from_be_bytes(*n)).map_err(bad)?;
    let hash_bytes = n
        .checked_mul(32)
        .filter(|&len| len <= rest.len())
        .ok_or_else(|| bad("audit proof truncated"))?;
    let (hashes_raw, body) = rest.split_at(hash_bytes);
    let hashes = hashes_raw
        .chunks_exact(32)
        .map(|c| {
            let mut h = [0u8; 32];
            h.copy_from_slice(c);
            h
        })
        .collect();
    let msg = pb::AppendOnlyProof::parse_from_bytes(body).map_err(bad)?;
    let proof = akd::AppendOnlyProof::try_from(&msg).map_err(bad)?;
    let again = pb::AppendOnlyProof::from(&proof).write_to_bytes();
    canonical(body, again.map_err(bad))?;
    Ok((hashes, proof))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn decoders_never_panic(b in proptest::collection::vec(any::<u8>(), 0..4096)) {
            let _ = decode_lookup(&b);
            let _ = decode_history(&b);
            let _ = decode_audit(&b);
            let mut prefixed = AUDIT_MAGIC.to_vec();
            prefixed.extend_from_slice(&b);
            let _ = decode_audit(&prefixed);
            let _ = crate::DeviceList::decode(&b);
            let _ = crate::SignedRoot::from_bytes(&b);
        }
    }

    #[test]
    fn audit_container_refuses_lies_about_its_length() {
        let mut b = AUDIT_MAGIC.to_vec();
        b.extend_from_slice(&u32::MAX.to_be_bytes());
        b.extend_from_slice(&[0; 64]);
        assert!(decode_audit(&b).is_err());
        assert!(decode_audit(b"VAP").is_err());
    }
}
