//! Signed epoch roots: what the server vouches for, and what a client keeps.
//!
//! The server signs every root it hands out with its directory key (Ed25519).
//! The signed message is fixed-length and domain-separated:
//!
//! ```text
//! "valise/directory/root/v1" || epoch (u64 BE) || root hash (32)
//!     || timestamp ms (i64 BE) || VRF public key (32)
//! ```
//! The VRF public key is inside the signature so that a client learns it
//! from the same pinned directory key: a server that swapped VRF keys would
//! have to sign that too. The timestamp is when the root was signed (not when
//! the epoch was published), so a client can tell how fresh its view is.

use crate::error::DirectoryError;
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use valise_proto::bytes::Bytes;
use zeroize::Zeroizing;

/// Domain separator of the signed root message.
const ROOT_CONTEXT: &[u8] = b"valise/directory/root/v1";

/// Name of the root signing key in [`crate::DirectoryStorage`], when the
/// server keeps it there ([`RootSigner::load_or_create`]).
pub const ROOT_SECRET_NAME: &str = "root-signing-ed25519";

/// Length of a root hash (akd's digest).
pub const HASH_LEN: usize = 32;

/// The server's directory signing key. Kept secret by the server.
pub struct RootSigner {
    key: SigningKey,
}

impl RootSigner {
    /// The key from its 32-byte secret seed.
    pub fn from_seed(seed: &[u8; 32]) -> Self {
        Self {
            key: SigningKey::from_bytes(seed),
        }
    }

    /// A fresh key from the operating system's random source.
    pub fn generate() -> Result<Self, DirectoryError> {
        let seed = random_seed()?;
        Ok(Self::from_seed(&seed))
    }

    /// Loads the key stored under [`ROOT_SECRET_NAME`], or generates and
    /// stores one: for a server that keeps the directory key with the
    /// directory (backups then restore both together).
    pub fn load_or_create<S: crate::DirectoryStorage + ?Sized>(
        storage: &S,
    ) -> Result<Self, DirectoryError> {
        let stored = match storage.get_secret(ROOT_SECRET_NAME)? {
            Some(s) => s,
            None => storage.insert_secret_if_absent(ROOT_SECRET_NAME, random_seed()?.as_ref())?,
        };
        let seed: &[u8; 32] = stored.as_slice().try_into().map_err(|_| {
            DirectoryError::Storage(format!(
                "stored directory key has {} bytes, expected 32",
                stored.len()
            ))
        })?;
        Ok(Self::from_seed(seed))
    }

    /// The 32-byte secret seed, for the caller that stores it itself.
    pub fn seed(&self) -> Zeroizing<[u8; 32]> {
        Zeroizing::new(self.key.to_bytes())
    }

    /// The public key clients pin.
    pub fn public_key(&self) -> DirectoryKey {
        DirectoryKey(self.key.verifying_key().to_bytes())
    }

    /// Signs a root.
    pub fn sign(
        &self,
        epoch: u64,
        root_hash: [u8; HASH_LEN],
        timestamp_ms: i64,
        vrf_public_key: [u8; 32],
    ) -> SignedRoot {
        let mut root = SignedRoot {
            epoch,
            root_hash,
            timestamp_ms,
            vrf_public_key,
            signature: [0; 64],
        };
        root.signature = self.key.sign(&root.message()).to_bytes();
        root
    }
}

impl std::fmt::Debug for RootSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootSigner({:?})", self.public_key())
    }
}

/// 32 bytes from the operating system's random source.
pub(crate) fn random_seed() -> Result<Zeroizing<[u8; 32]>, DirectoryError> {
    use rand::TryRngCore;
    let mut seed = Zeroizing::new([0u8; 32]);
    rand::rngs::OsRng
        .try_fill_bytes(seed.as_mut())
        .map_err(|e| DirectoryError::Internal(format!("no randomness: {e}")))?;
    Ok(seed)
}

/// The public directory key of a server (Ed25519), which clients pin.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DirectoryKey(pub [u8; 32]);

impl std::fmt::Debug for DirectoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirectoryKey({})", hex(&self.0))
    }
}

impl std::fmt::Display for DirectoryKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex(&self.0))
    }
}

impl TryFrom<String> for DirectoryKey {
    type Error = DirectoryError;
    fn try_from(s: String) -> Result<Self, DirectoryError> {
        let bad = || DirectoryError::InvalidRequest(format!("not a directory key: {s:?}"));
        if s.len() != 64 || !s.is_ascii() {
            return Err(bad());
        }
        let mut out = [0u8; 32];
        for (i, b) in out.iter_mut().enumerate() {
            *b = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
        }
        Ok(Self(out))
    }
}

impl From<DirectoryKey> for String {
    fn from(k: DirectoryKey) -> String {
        hex(&k.0)
    }
}

pub(crate) fn hex(b: &[u8]) -> String {
    b.iter().map(|b| format!("{b:02x}")).collect()
}

/// An epoch root as the server signed it. Not trusted until
/// [`crate::verify::verify_root`] turns it into a [`VerifiedRoot`].
///
/// In JSON the binary fields are base64; [`SignedRoot::to_bytes`] is a
/// fixed 168-byte encoding (the signed message followed by the signature).
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RootWire", into = "RootWire")]
pub struct SignedRoot {
    epoch: u64,
    root_hash: [u8; HASH_LEN],
    timestamp_ms: i64,
    vrf_public_key: [u8; 32],
    signature: [u8; 64],
}

/// Length of [`SignedRoot::to_bytes`].
pub const SIGNED_ROOT_LEN: usize = ROOT_CONTEXT.len() + 8 + HASH_LEN + 8 + 32 + 64;

impl SignedRoot {
    pub fn epoch(&self) -> u64 {
        self.epoch
    }

    pub fn root_hash(&self) -> &[u8; HASH_LEN] {
        &self.root_hash
    }

    pub fn timestamp_ms(&self) -> i64 {
        self.timestamp_ms
    }

    pub fn vrf_public_key(&self) -> &[u8; 32] {
        &self.vrf_public_key
    }

    /// The exact bytes the signature covers.
    fn message(&self) -> Vec<u8> {
        let mut m = Vec::with_capacity(SIGNED_ROOT_LEN - 64);
        m.extend_from_slice(ROOT_CONTEXT);
        m.extend_from_slice(&self.epoch.to_be_bytes());
        m.extend_from_slice(&self.root_hash);
        m.extend_from_slice(&self.timestamp_ms.to_be_bytes());
        m.extend_from_slice(&self.vrf_public_key);
        m
    }

    /// Fixed-length encoding: the signed message, then the signature.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = self.message();
        out.extend_from_slice(&self.signature);
        out
    }

    /// Parses [`SignedRoot::to_bytes`]; the signature is not checked here.
    pub fn from_bytes(b: &[u8]) -> Result<Self, DirectoryError> {
        let bad = || DirectoryError::BadProof(format!("a signed root is {SIGNED_ROOT_LEN} bytes"));
        if b.len() != SIGNED_ROOT_LEN || !b.starts_with(ROOT_CONTEXT) {
            return Err(bad());
        }
        let rest = &b[ROOT_CONTEXT.len()..];
        let (epoch, rest) = rest.split_at(8);
        let (hash, rest) = rest.split_at(HASH_LEN);
        let (ts, rest) = rest.split_at(8);
        let (vrf, sig) = rest.split_at(32);
        Ok(Self {
            epoch: u64::from_be_bytes(epoch.try_into().map_err(|_| bad())?),
            root_hash: hash.try_into().map_err(|_| bad())?,
            timestamp_ms: i64::from_be_bytes(ts.try_into().map_err(|_| bad())?),
            vrf_public_key: vrf.try_into().map_err(|_| bad())?,
            signature: sig.try_into().map_err(|_| bad())?,
        })
    }

    /// Checks the signature under `key`.
    pub(crate) fn check_signature(&self, key: &DirectoryKey) -> Result<(), DirectoryError> {
        let vk = VerifyingKey::from_bytes(&key.0).map_err(|_| DirectoryError::BadSignature)?;
        vk.verify_strict(&self.message(), &Signature::from_bytes(&self.signature))
            .map_err(|_| DirectoryError::BadSignature)
    }
}

impl std::fmt::Debug for SignedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedRoot")
            .field("epoch", &self.epoch)
            .field("root_hash", &hex(&self.root_hash))
            .field("timestamp_ms", &self.timestamp_ms)
            .finish_non_exhaustive()
    }
}

/// JSON/CBOR shape of a signed root.
#[derive(Serialize, Deserialize)]
struct RootWire {
    epoch: u64,
    root_hash: Bytes,
    timestamp_ms: i64,
    vrf_public_key: Bytes,
    signature: Bytes,
}

impl From<SignedRoot> for RootWire {
    fn from(r: SignedRoot) -> Self {
        Self {
            epoch: r.epoch,
            root_hash: r.root_hash.to_vec().into(),
            timestamp_ms: r.timestamp_ms,
            vrf_public_key: r.vrf_public_key.to_vec().into(),
            signature: r.signature.to_vec().into(),
        }
    }
}

impl TryFrom<RootWire> for SignedRoot {
    type Error = DirectoryError;
    fn try_from(w: RootWire) -> Result<Self, DirectoryError> {
        let len =
            |what: &str| DirectoryError::BadProof(format!("signed root: wrong {what} length"));
        Ok(Self {
            epoch: w.epoch,
            root_hash: w.root_hash.as_slice().try_into().map_err(|_| len("hash"))?,
            timestamp_ms: w.timestamp_ms,
            vrf_public_key: w
                .vrf_public_key
                .as_slice()
                .try_into()
                .map_err(|_| len("VRF key"))?,
            signature: w
                .signature
                .as_slice()
                .try_into()
                .map_err(|_| len("signature"))?,
        })
    }
}

/// A root whose signature was checked under a pinned directory key. Only
/// [`crate::verify::verify_root`] makes one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifiedRoot {
    pub(crate) signed: SignedRoot,
    pub(crate) key: DirectoryKey,
}

impl VerifiedRoot {
    pub fn epoch(&self) -> u64 {
        self.signed.epoch
    }

    pub fn root_hash(&self) -> &[u8; HASH_LEN] {
        &self.signed.root_hash
    }

    pub fn timestamp_ms(&self) -> i64 {
        self.signed.timestamp_ms
    }

    /// The signed root, to keep as evidence.
    pub fn signed(&self) -> &SignedRoot {
        &self.signed
    }

    /// The directory key it verified under.
    pub fn key(&self) -> &DirectoryKey {
        &self.key
    }
}
