//! The transparency log under the server's audit log (issue 10, I7), one
//! copy for the server that appends and the auditors that check it.
//!
//! - **Tree:** RFC 9162 §2.1 Merkle tree hashing: a leaf is
//!   `SHA-256(0x00 ‖ entry)`, a node `SHA-256(0x01 ‖ left ‖ right)`.
//! - **Proofs:** which stored subtrees an inclusion or a consistency proof
//!   needs ([`inclusion_plan`], [`consistency_plan`]), so that the server
//!   answers from O(log n) stored hashes, and their verification, which is
//!   `ct-merkle`'s (its in-order node numbering moves as the tree grows, so
//!   the server stores the *complete* subtrees of [`Subtree`] instead).
//! - **Checkpoints:** C2SP `tlog-checkpoint` bodies
//!   (`<origin>\n<size>\n<base64 root>\n`) in a C2SP `signed-note` with one
//!   Ed25519 signature. The note is written and parsed here (a small text
//!   format, fuzzed by `fuzz/fuzz_targets/checkpoint.rs`); the signature is
//!   ed25519-dalek's.
//!
//! Untrusted input keeps its own type until it is verified:
//!
//! ```text
//! note text ──SignedCheckpoint::parse──▶ SignedCheckpoint
//!     ──verify(&AuditKey)──▶ VerifiedCheckpoint
//!     ──verify_consistency(older, proof) / verify_inclusion(entry, proof)──▶ ()
//! ```

use base64::Engine;
use base64::engine::general_purpose::STANDARD as B64;
use ct_merkle::{ConsistencyProof, InclusionProof, RootHash};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use sha2::{Digest, Sha256};
use thiserror::Error;
use zeroize::Zeroizing;

/// Length of every hash in the tree.
pub const HASH_LEN: usize = 32;

/// A SHA-256 tree hash.
pub type Hash = [u8; HASH_LEN];

/// Largest signed note parsed at all; ours are ~200 bytes.
pub const MAX_NOTE_BYTES: usize = 16 * 1024;

/// Most signature lines read from one note (C2SP lets a verifier cap them).
pub const MAX_NOTE_SIGNATURES: usize = 16;

/// Largest tree size handled: ct-merkle's bound, far above any audit log.
pub const MAX_TREE_SIZE: u64 = u64::MAX / 2;

/// Signature type byte of Ed25519 in C2SP signed-note key ids.
const ED25519_SIG_TYPE: u8 = 0x01;

/// Everything that can go wrong with a log, a proof or a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TlogError {
    #[error("malformed signed note: {0}")]
    MalformedNote(String),
    #[error("malformed checkpoint: {0}")]
    MalformedCheckpoint(String),
    #[error("no signature by {origin} with key id {key_id} on the checkpoint")]
    NoSignature { origin: String, key_id: String },
    #[error("the checkpoint's signature does not verify under the audit key")]
    BadSignature,
    #[error("checkpoint origin is {got:?}, expected {expected:?}")]
    OriginMismatch { expected: String, got: String },
    #[error("index {index} is outside a tree of size {size}")]
    OutOfRange { index: u64, size: u64 },
    #[error("the inclusion proof for entry {index} does not lead to the root of size {size}")]
    InclusionFailed { index: u64, size: u64 },
    #[error("tree of size {new} does not extend the tree of size {old} seen before (fork)")]
    Inconsistent { old: u64, new: u64 },
    #[error("tree of size {new} is smaller than size {old} seen before (truncated or rolled back)")]
    Shrunk { old: u64, new: u64 },
    #[error("proof has {got} hashes, expected {expected}")]
    ProofLength { expected: usize, got: usize },
    #[error("signing key file: {0}")]
    Key(String),
}

impl TlogError {
    /// Stable snake_case code. Never renamed or reused.
    pub fn code(&self) -> &'static str {
        match self {
            Self::MalformedNote(_) => "tlog_malformed_note",
            Self::MalformedCheckpoint(_) => "tlog_malformed_checkpoint",
            Self::NoSignature { .. } => "tlog_no_signature",
            Self::BadSignature => "tlog_bad_signature",
            Self::OriginMismatch { .. } => "tlog_origin_mismatch",
            Self::OutOfRange { .. } => "tlog_out_of_range",
            Self::InclusionFailed { .. } => "tlog_inclusion_failed",
            Self::Inconsistent { .. } => "tlog_inconsistent",
            Self::Shrunk { .. } => "tlog_shrunk",
            Self::ProofLength { .. } => "tlog_proof_length",
            Self::Key(_) => "tlog_key",
        }
    }
}

/// RFC 9162 leaf hash of one entry.
pub fn leaf_hash(entry: &[u8]) -> Hash {
    Sha256::new()
        .chain_update([0x00])
        .chain_update(entry)
        .finalize()
        .into()
}

/// RFC 9162 interior node hash.
pub fn node_hash(left: &Hash, right: &Hash) -> Hash {
    Sha256::new()
        .chain_update([0x01])
        .chain_update(left)
        .chain_update(right)
        .finalize()
        .into()
}

/// A complete subtree: `2^level` leaves starting at leaf `index << level`.
/// Once complete its hash never changes, so the server stores it once.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Subtree {
    pub level: u8,
    pub index: u64,
}

impl Subtree {
    /// First leaf covered.
    pub fn start(self) -> u64 {
        self.index << self.level
    }

    /// One past the last leaf covered.
    pub fn end(self) -> u64 {
        (self.index + 1) << self.level
    }
}

/// The complete subtrees that make up leaves `[start, end)`, largest first.
/// For the ranges of an RFC 9162 proof (a complete subtree, or the right
/// edge of the tree) their hashes fold into the range's hash with
/// [`fold_subtrees`]; for `[0, n)` they are the tree's right frontier.
pub fn range_subtrees(start: u64, end: u64) -> Vec<Subtree> {
    let mut out = Vec::new();
    let mut at = start;
    while at < end {
        // The largest aligned power of two at `at` that still fits.
        let mut level = if at == 0 { 63 } else { at.trailing_zeros() };
        while level > 0 && (1u64 << level) > end - at {
            level -= 1;
        }
        out.push(Subtree {
            level: level as u8,
            index: at >> level,
        });
        at += 1 << level;
    }
    out
}

/// The hash of a range from the hashes of its [`range_subtrees`], in the
/// same order: the left-balanced tree folds from the right.
pub fn fold_subtrees(hashes: &[Hash]) -> Option<Hash> {
    let (last, rest) = hashes.split_last()?;
    Some(rest.iter().rev().fold(*last, |acc, h| node_hash(h, &acc)))
}

/// The hash of the empty tree (RFC 9162: SHA-256 of nothing).
pub fn empty_root() -> Hash {
    Sha256::digest([]).into()
}

/// A leaf range `[start, end)` whose hash a proof carries.
pub type Range = (u64, u64);

/// The ranges of an inclusion proof for leaf `index` in a tree of `size`,
/// in proof order (RFC 9162 §2.1.3.1, leaf's sibling first).
pub fn inclusion_plan(index: u64, size: u64) -> Result<Vec<Range>, TlogError> {
    if index >= size || size > MAX_TREE_SIZE {
        return Err(TlogError::OutOfRange { index, size });
    }
    let mut out = Vec::new();
    let (mut lo, mut hi) = (0, size);
    // Walk down from the root; each step's sibling goes in front.
    while hi - lo > 1 {
        let k = largest_power_below(hi - lo);
        if index < lo + k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
        }
    }
    out.reverse();
    Ok(out)
}

/// The ranges of a consistency proof from `old` to `new` leaves, in proof
/// order (RFC 9162 §2.1.4.1). Empty when `old` is 0 or equals `new`.
pub fn consistency_plan(old: u64, new: u64) -> Result<Vec<Range>, TlogError> {
    if old > new {
        return Err(TlogError::Shrunk { old, new });
    }
    if new > MAX_TREE_SIZE {
        return Err(TlogError::OutOfRange {
            index: new,
            size: MAX_TREE_SIZE,
        });
    }
    let mut out = Vec::new();
    if old == 0 || old == new {
        return Ok(out);
    }
    // SUBPROOF(m, D[lo:hi], b), unrolled; siblings collected top-down.
    let (mut lo, mut hi, mut m, mut whole) = (0, new, old, true);
    while m != hi - lo {
        let k = largest_power_below(hi - lo);
        if m <= k {
            out.push((lo + k, hi));
            hi = lo + k;
        } else {
            out.push((lo, lo + k));
            lo += k;
            m -= k;
            whole = false;
        }
    }
    if !whole {
        out.push((lo, hi));
    }
    out.reverse();
    Ok(out)
}

/// The largest power of two strictly below `n` (`n` ≥ 2).
fn largest_power_below(n: u64) -> u64 {
    1 << (63 - (n - 1).leading_zeros())
}

/// The tree's right frontier: the hashes of the complete subtrees of
/// [`range_subtrees`]`(0, size)`. Enough to append and to compute the root
/// without reading the tree again.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Frontier {
    size: u64,
    hashes: Vec<Hash>,
}

impl Frontier {
    /// The empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// A frontier from its stored subtree hashes, in [`range_subtrees`]
    /// order for `(0, size)`.
    pub fn from_parts(size: u64, hashes: Vec<Hash>) -> Result<Self, TlogError> {
        let expected = range_subtrees(0, size).len();
        if hashes.len() != expected {
            return Err(TlogError::ProofLength {
                expected,
                got: hashes.len(),
            });
        }
        Ok(Self { size, hashes })
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    /// The stored subtree hashes, for [`Frontier::from_parts`].
    pub fn hashes(&self) -> &[Hash] {
        &self.hashes
    }

    /// The root of the tree of [`Frontier::size`] leaves.
    pub fn root(&self) -> Hash {
        fold_subtrees(&self.hashes).unwrap_or_else(empty_root)
    }

    /// Appends one entry; returns every subtree it completed, smallest
    /// (the leaf) first, with its hash, for the caller to store.
    pub fn push(&mut self, entry: &[u8]) -> Vec<(Subtree, Hash)> {
        self.push_leaf(leaf_hash(entry))
    }

    /// Appends one entry known only by its leaf hash (what an outside
    /// auditor is given); as [`Frontier::push`].
    pub fn push_leaf(&mut self, leaf: Hash) -> Vec<(Subtree, Hash)> {
        let index = self.size;
        let mut hash = leaf;
        let mut done = vec![(Subtree { level: 0, index }, hash)];
        let mut level = 0u8;
        // Each trailing one bit of the old size is a left sibling to merge.
        while (index >> level) & 1 == 1 {
            let Some(left) = self.hashes.pop() else { break };
            hash = node_hash(&left, &hash);
            level += 1;
            done.push((
                Subtree {
                    level,
                    index: index >> level,
                },
                hash,
            ));
        }
        self.hashes.push(hash);
        self.size += 1;
        done
    }
}

/// Root of a whole list of entries (the offline verifier's recomputation).
pub fn root_of<'a>(entries: impl IntoIterator<Item = &'a [u8]>) -> (u64, Hash) {
    let mut f = Frontier::new();
    for e in entries {
        f.push(e);
    }
    (f.size(), f.root())
}

/// Verifies that `entry` is leaf `index` of the tree `(size, root)`.
pub fn verify_inclusion(
    root: &Hash,
    size: u64,
    index: u64,
    entry: &[u8],
    proof: &[Hash],
) -> Result<(), TlogError> {
    let expected = inclusion_plan(index, size)?.len();
    if proof.len() != expected {
        return Err(TlogError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    let root = RootHash::<Sha256>::new((*root).into(), size);
    let proof = InclusionProof::<Sha256>::from_digests(proof.iter().map(|h| h.as_ref().into()));
    root.verify_inclusion(&entry, index, &proof)
        .map_err(|_| TlogError::InclusionFailed { index, size })
}

/// Verifies that the tree `(new_size, new_root)` extends `(old_size,
/// old_root)`. Every tree extends the empty one; a tree extends itself
/// only if the roots are equal.
pub fn verify_consistency(
    (old_size, old_root): (u64, &Hash),
    (new_size, new_root): (u64, &Hash),
    proof: &[Hash],
) -> Result<(), TlogError> {
    let expected = consistency_plan(old_size, new_size)?.len();
    if proof.len() != expected {
        return Err(TlogError::ProofLength {
            expected,
            got: proof.len(),
        });
    }
    let fork = TlogError::Inconsistent {
        old: old_size,
        new: new_size,
    };
    if old_size == 0 {
        return Ok(());
    }
    if old_size == new_size {
        return if old_root == new_root {
            Ok(())
        } else {
            Err(fork)
        };
    }
    let old = RootHash::<Sha256>::new((*old_root).into(), old_size);
    let new = RootHash::<Sha256>::new((*new_root).into(), new_size);
    let proof = ConsistencyProof::<Sha256>::from_digests(proof.iter().map(|h| h.as_ref().into()));
    new.verify_consistency(&old, &proof).map_err(|_| fork)
}

/// A checkpoint body (C2SP tlog-checkpoint): which log, how many entries,
/// and the root over them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    origin: String,
    size: u64,
    root: Hash,
}

impl Checkpoint {
    /// A checkpoint; the origin must be a valid note key name.
    pub fn new(origin: &str, size: u64, root: Hash) -> Result<Self, TlogError> {
        check_name(origin).map_err(TlogError::MalformedCheckpoint)?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }

    pub fn origin(&self) -> &str {
        &self.origin
    }

    pub fn size(&self) -> u64 {
        self.size
    }

    pub fn root(&self) -> &Hash {
        &self.root
    }

    /// The body text, the bytes that are signed.
    pub fn to_text(&self) -> String {
        format!(
            "{}\n{}\n{}\n",
            self.origin,
            self.size,
            B64.encode(self.root)
        )
    }

    /// Parses a body. Strict: exactly three lines (this log writes no
    /// extension lines), a decimal size without leading zeros, a padded
    /// base64 root of 32 bytes.
    pub fn parse(text: &str) -> Result<Self, TlogError> {
        let bad = |m: &str| TlogError::MalformedCheckpoint(m.to_owned());
        let body = text
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let mut lines = body.split('\n');
        let (Some(origin), Some(size), Some(root), None) =
            (lines.next(), lines.next(), lines.next(), lines.next())
        else {
            return Err(bad("expected three lines: origin, size, root"));
        };
        check_name(origin).map_err(TlogError::MalformedCheckpoint)?;
        if size.is_empty()
            || !size.bytes().all(|b| b.is_ascii_digit())
            || (size.len() > 1 && size.starts_with('0'))
        {
            return Err(bad("size is not a decimal number"));
        }
        let size: u64 = size.parse().map_err(|_| bad("size out of range"))?;
        let root: Hash = B64
            .decode(root)
            .ok()
            .and_then(|r| r.try_into().ok())
            .ok_or_else(|| bad("root is not 32 bytes of base64"))?;
        Ok(Self {
            origin: origin.to_owned(),
            size,
            root,
        })
    }
}

/// A key name (and so an origin): non-empty UTF-8 with no whitespace and
/// no `+` (C2SP signed-note).
fn check_name(name: &str) -> Result<(), String> {
    if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c == '+') {
        return Err(format!("{name:?} is not a key name"));
    }
    Ok(())
}

/// The audit log's public key: the key name (the log's origin) and the
/// Ed25519 key, which auditors pin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditKey {
    name: String,
    key: VerifyingKey,
}

impl AuditKey {
    pub fn new(name: &str, public: &[u8; 32]) -> Result<Self, TlogError> {
        check_name(name).map_err(TlogError::Key)?;
        let key = VerifyingKey::from_bytes(public)
            .map_err(|_| TlogError::Key("not an Ed25519 public key".into()))?;
        Ok(Self {
            name: name.to_owned(),
            key,
        })
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn public_bytes(&self) -> [u8; 32] {
        self.key.to_bytes()
    }

    /// The C2SP key id: `SHA-256(name ‖ 0x0A ‖ 0x01 ‖ key)[..4]`.
    pub fn key_id(&self) -> [u8; 4] {
        let h = Sha256::new()
            .chain_update(self.name.as_bytes())
            .chain_update([b'\n', ED25519_SIG_TYPE])
            .chain_update(self.key.as_bytes())
            .finalize();
        [h[0], h[1], h[2], h[3]]
    }

    /// The public key in hex, as `--key` takes it.
    pub fn hex(&self) -> String {
        self.key
            .as_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The server's checkpoint signing key. Zeroized on drop (ed25519-dalek's
/// `zeroize` feature); its `Debug` shows only the public key.
pub struct CheckpointSigner {
    key: SigningKey,
    public: AuditKey,
}

impl CheckpointSigner {
    /// The signer of log `origin` from its 32-byte secret seed.
    pub fn from_seed(origin: &str, seed: &[u8; 32]) -> Result<Self, TlogError> {
        let key = SigningKey::from_bytes(seed);
        let public = AuditKey::new(origin, key.verifying_key().as_bytes())?;
        Ok(Self { key, public })
    }

    /// The 32-byte secret seed, for the key file.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    pub fn public_key(&self) -> &AuditKey {
        &self.public
    }

    /// Signs the checkpoint `(size, root)` of this signer's log.
    pub fn sign(&self, size: u64, root: Hash) -> Result<VerifiedCheckpoint, TlogError> {
        let checkpoint = Checkpoint::new(&self.public.name, size, root)?;
        let text = checkpoint.to_text();
        let sig = self.key.sign(text.as_bytes());
        let mut blob = self.public.key_id().to_vec();
        blob.extend_from_slice(&sig.to_bytes());
        let note = format!(
            "{text}\n\u{2014} {} {}\n",
            self.public.name,
            B64.encode(blob)
        );
        Ok(VerifiedCheckpoint { checkpoint, note })
    }
}

impl std::fmt::Debug for CheckpointSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Self { key: _, public } = self;
        write!(f, "CheckpointSigner({} {})", public.name, public.hex())
    }
}

/// One signature line of a note: `— <name> <base64(key id ‖ signature)>`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct NoteSignature {
    name: String,
    key_id: [u8; 4],
    signature: Vec<u8>,
}

/// A checkpoint as received: parsed, not yet trusted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SignedCheckpoint {
    checkpoint: Checkpoint,
    signatures: Vec<NoteSignature>,
    note: String,
}

impl SignedCheckpoint {
    /// Parses a signed note (C2SP signed-note) whose text is a checkpoint.
    pub fn parse(note: &str) -> Result<Self, TlogError> {
        let bad = |m: &str| TlogError::MalformedNote(m.to_owned());
        if note.len() > MAX_NOTE_BYTES {
            return Err(bad("note too large"));
        }
        // The text ends at the last blank line; it keeps its final newline.
        let split = note.rfind("\n\n").ok_or_else(|| bad("no blank line"))?;
        let (text, sigs) = (&note[..=split], &note[split + 2..]);
        let sigs = sigs
            .strip_suffix('\n')
            .ok_or_else(|| bad("no final newline"))?;
        let mut signatures = Vec::new();
        for line in sigs.split('\n') {
            if signatures.len() == MAX_NOTE_SIGNATURES {
                return Err(bad("too many signatures"));
            }
            let rest = line
                .strip_prefix("\u{2014} ")
                .ok_or_else(|| bad("signature line does not start with an em dash"))?;
            let (name, blob) = rest
                .split_once(' ')
                .ok_or_else(|| bad("signature line has no signature"))?;
            check_name(name).map_err(TlogError::MalformedNote)?;
            let blob = B64
                .decode(blob)
                .map_err(|_| bad("signature is not base64"))?;
            let (id, signature) = blob
                .split_first_chunk::<4>()
                .ok_or_else(|| bad("signature shorter than a key id"))?;
            signatures.push(NoteSignature {
                name: name.to_owned(),
                key_id: *id,
                signature: signature.to_vec(),
            });
        }
        Ok(Self {
            checkpoint: Checkpoint::parse(text)?,
            signatures,
            note: note.to_owned(),
        })
    }

    /// What the checkpoint claims, unverified (for error messages).
    pub fn claimed(&self) -> &Checkpoint {
        &self.checkpoint
    }

    /// Trusts the checkpoint only if `key` signed it and it is `key`'s log.
    /// Signatures by other keys (witnesses, say) are ignored, as C2SP asks.
    pub fn verify(self, key: &AuditKey) -> Result<VerifiedCheckpoint, TlogError> {
        if self.checkpoint.origin != key.name {
            return Err(TlogError::OriginMismatch {
                expected: key.name.clone(),
                got: self.checkpoint.origin,
            });
        }
        let id = key.key_id();
        let sig = self
            .signatures
            .iter()
            .find(|s| s.name == key.name && s.key_id == id)
            .ok_or_else(|| TlogError::NoSignature {
                origin: key.name.clone(),
                key_id: id.iter().map(|b| format!("{b:02x}")).collect(),
            })?;
        let sig = Signature::from_slice(&sig.signature).map_err(|_| TlogError::BadSignature)?;
        key.key
            .verify_strict(self.checkpoint.to_text().as_bytes(), &sig)
            .map_err(|_| TlogError::BadSignature)?;
        Ok(VerifiedCheckpoint {
            checkpoint: self.checkpoint,
            note: self.note,
        })
    }
}

/// A checkpoint whose signature verified under the pinned audit key (or
/// that this process signed itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedCheckpoint {
    checkpoint: Checkpoint,
    note: String,
}

impl VerifiedCheckpoint {
    pub fn checkpoint(&self) -> &Checkpoint {
        &self.checkpoint
    }

    pub fn size(&self) -> u64 {
        self.checkpoint.size
    }

    pub fn root(&self) -> &Hash {
        &self.checkpoint.root
    }

    /// The signed note, as served and stored.
    pub fn note(&self) -> &str {
        &self.note
    }

    /// Checks that this checkpoint extends `older` (seen before): not
    /// smaller, and consistent by `proof`.
    pub fn verify_extends(&self, older: &Checkpoint, proof: &[Hash]) -> Result<(), TlogError> {
        if self.checkpoint.origin != older.origin {
            return Err(TlogError::OriginMismatch {
                expected: older.origin.clone(),
                got: self.checkpoint.origin.clone(),
            });
        }
        if self.size() < older.size {
            return Err(TlogError::Shrunk {
                old: older.size,
                new: self.size(),
            });
        }
        verify_consistency((older.size, &older.root), (self.size(), self.root()), proof)
    }

    /// Checks that `entry` is entry `index` of this checkpoint's tree.
    pub fn verify_inclusion(
        &self,
        index: u64,
        entry: &[u8],
        proof: &[Hash],
    ) -> Result<(), TlogError> {
        verify_inclusion(self.root(), self.size(), index, entry, proof)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn entries(n: u64) -> Vec<Vec<u8>> {
        (0..n).map(|i| format!("entry {i}").into_bytes()).collect()
    }

    /// Every complete subtree of a log of `entries`, as the server stores it.
    fn store(entries: &[Vec<u8>]) -> std::collections::HashMap<Subtree, Hash> {
        let mut f = Frontier::new();
        entries.iter().flat_map(|e| f.push(e)).collect()
    }

    /// A range's hash from stored subtrees, as the server answers a proof.
    fn range_hash(store: &std::collections::HashMap<Subtree, Hash>, (a, b): Range) -> Hash {
        let hashes: Vec<Hash> = range_subtrees(a, b).iter().map(|s| store[s]).collect();
        fold_subtrees(&hashes).unwrap()
    }

    /// The RFC 9162 reference: MTH by recursion.
    fn mth(entries: &[Vec<u8>]) -> Hash {
        match entries.len() {
            0 => empty_root(),
            1 => leaf_hash(&entries[0]),
            n => {
                let k = largest_power_below(n as u64) as usize;
                node_hash(&mth(&entries[..k]), &mth(&entries[k..]))
            }
        }
    }

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed("mfa.example/valise-audit", &[7; 32]).unwrap()
    }

    #[test]
    fn roots_match_the_rfc_recursion_and_ct_merkle() {
        for n in 0..40u64 {
            let e = entries(n);
            let (size, root) = root_of(e.iter().map(|e| e.as_slice()));
            assert_eq!((size, root), (n, mth(&e)), "size {n}");
            let store = store(&e);
            if n > 0 {
                assert_eq!(range_hash(&store, (0, n)), root);
            }
            let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<Sha256, Vec<u8>>::new();
            for x in &e {
                tree.push(x.clone());
            }
            if n > 0 {
                assert_eq!(tree.root().as_bytes().as_slice(), root.as_slice());
            }
        }
    }

    #[test]
    fn proofs_are_ct_merkles_proofs() {
        let e = entries(21);
        let store = store(&e);
        let mut tree = ct_merkle::mem_backed_tree::MemoryBackedTree::<Sha256, Vec<u8>>::new();
        for (n, x) in e.iter().enumerate() {
            tree.push(x.clone());
            let n = n as u64 + 1;
            for i in 0..n {
                let ours: Vec<u8> = inclusion_plan(i, n)
                    .unwrap()
                    .into_iter()
                    .flat_map(|r| range_hash(&store, r))
                    .collect();
                assert_eq!(
                    ours,
                    tree.prove_inclusion(i as usize).as_bytes(),
                    "{i} in {n}"
                );
            }
            for m in 1..n {
                let ours: Vec<u8> = consistency_plan(m, n)
                    .unwrap()
                    .into_iter()
                    .flat_map(|r| range_hash(&store, r))
                    .collect();
                // ct-merkle proves from `n - additions` to its current size.
                let theirs = tree.prove_consistency((n - m) as usize);
                assert_eq!(ours, theirs.as_bytes(), "{m} to {n}");
            }
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        #[test]
        fn inclusion_verifies_and_any_flip_fails(n in 1u64..80, i in 0u64..80, flip in 0usize..10_000) {
            let i = i % n;
            let e = entries(n);
            let store = store(&e);
            let root = range_hash(&store, (0, n));
            let proof: Vec<Hash> = inclusion_plan(i, n).unwrap().into_iter().map(|r| range_hash(&store, r)).collect();
            prop_assert!(verify_inclusion(&root, n, i, &e[i as usize], &proof).is_ok());
            // A flipped bit anywhere (proof, root or entry) fails.
            let bits = proof.len() * 256 + 256 + e[i as usize].len() * 8;
            let bit = flip % bits;
            let (mut proof, mut root, mut entry) = (proof, root, e[i as usize].clone());
            if bit < proof.len() * 256 {
                proof[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
            } else if bit < proof.len() * 256 + 256 {
                let b = bit - proof.len() * 256;
                root[b / 8] ^= 1 << (b % 8);
            } else {
                let b = bit - proof.len() * 256 - 256;
                entry[b / 8] ^= 1 << (b % 8);
            }
            prop_assert!(verify_inclusion(&root, n, i, &entry, &proof).is_err());
            // And so does another index.
            if n > 1 {
                let e2 = &e[((i + 1) % n) as usize];
                let good: Vec<Hash> = inclusion_plan(i, n).unwrap().into_iter().map(|r| range_hash(&store, r)).collect();
                prop_assert!(verify_inclusion(&range_hash(&store, (0, n)), n, i, e2, &good).is_err());
            }
        }

        #[test]
        fn consistency_verifies_and_any_flip_fails(new in 1u64..80, old in 0u64..80, flip in 0usize..10_000) {
            let old = old % (new + 1);
            let e = entries(new);
            let store = store(&e);
            let new_root = range_hash(&store, (0, new));
            let old_root = if old == 0 { empty_root() } else { range_hash(&store, (0, old)) };
            let proof: Vec<Hash> = consistency_plan(old, new).unwrap().into_iter().map(|r| range_hash(&store, r)).collect();
            prop_assert!(verify_consistency((old, &old_root), (new, &new_root), &proof).is_ok());
            if old == 0 {
                return Ok(());
            }
            let bits = proof.len() * 256 + 512;
            let bit = flip % bits;
            let (mut proof, mut old_root, mut new_root) = (proof, old_root, new_root);
            if bit < proof.len() * 256 {
                proof[bit / 256][(bit % 256) / 8] ^= 1 << (bit % 8);
            } else if bit < proof.len() * 256 + 256 {
                let b = bit - proof.len() * 256;
                old_root[b / 8] ^= 1 << (b % 8);
            } else {
                let b = bit - proof.len() * 256 - 256;
                new_root[b / 8] ^= 1 << (b % 8);
            }
            prop_assert!(verify_consistency((old, &old_root), (new, &new_root), &proof).is_err());
        }

        #[test]
        fn a_fork_is_inconsistent(new in 2u64..60, old in 1u64..60, edit in 0u64..60) {
            let old = 1 + old % (new - 1);
            let edit = edit % old;
            let e = entries(new);
            let mut forked = e.clone();
            forked[edit as usize].push(b'!');
            let store = store(&forked);
            let old_root = mth(&e[..old as usize]);
            let proof: Vec<Hash> = consistency_plan(old, new).unwrap().into_iter().map(|r| range_hash(&store, r)).collect();
            prop_assert_eq!(
                verify_consistency((old, &old_root), (new, &range_hash(&store, (0, new))), &proof),
                Err(TlogError::Inconsistent { old, new })
            );
        }
    }

    #[test]
    fn checkpoints_sign_parse_and_verify() {
        let s = signer();
        let root = mth(&entries(5));
        let signed = s.sign(5, root).unwrap();
        let text = signed.note();
        assert!(text.starts_with("mfa.example/valise-audit\n5\n"));
        assert!(text.contains("\n\n\u{2014} mfa.example/valise-audit "));
        let parsed = SignedCheckpoint::parse(text).unwrap();
        assert_eq!(parsed.clone().verify(s.public_key()).unwrap(), signed);
        // Another key, another origin, a flipped byte: refused.
        let other = CheckpointSigner::from_seed("mfa.example/valise-audit", &[8; 32]).unwrap();
        assert_eq!(
            parsed
                .clone()
                .verify(other.public_key())
                .unwrap_err()
                .code(),
            "tlog_no_signature"
        );
        let elsewhere = CheckpointSigner::from_seed("evil.example/log", &[7; 32]).unwrap();
        assert_eq!(
            parsed.verify(elsewhere.public_key()).unwrap_err().code(),
            "tlog_origin_mismatch"
        );
        let forged = text.replacen("\n5\n", "\n6\n", 1);
        assert_eq!(
            SignedCheckpoint::parse(&forged)
                .unwrap()
                .verify(s.public_key())
                .unwrap_err(),
            TlogError::BadSignature
        );
    }

    #[test]
    fn the_key_id_is_c2sps() {
        // The C2SP signed-note example key (the Go sumdb/note test vector):
        // PeterNeumann+c74f20a3+ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW
        let vkey = B64
            .decode("ARpc2QcUPDhMQegwxbzhKqiBfsVkmqq/LDE4izWy10TW")
            .unwrap();
        assert_eq!(vkey[0], ED25519_SIG_TYPE);
        let k = AuditKey::new("PeterNeumann", &vkey[1..].try_into().unwrap()).unwrap();
        assert_eq!(k.key_id(), [0xc7, 0x4f, 0x20, 0xa3]);
    }

    #[test]
    fn malformed_notes_are_typed_errors() {
        let good = signer().sign(3, [1; 32]).unwrap().note().to_owned();
        for bad in [
            "",
            "x\n",
            "\n\n",
            &good.replace("\u{2014}", "-"),
            &good.replacen("\n3\n", "\n03\n", 1),
            &good.replacen("\n3\n", "\n-3\n", 1),
            &good.replacen("\n3\n", "\n3\nextra\n", 1),
            &good[..good.len() - 1],
            &good.replacen("valise-audit\n", "valise audit\n", 1),
        ] {
            let e = SignedCheckpoint::parse(bad).unwrap_err();
            assert!(e.code().starts_with("tlog_malformed"), "{bad:?}: {e}");
        }
    }
}
