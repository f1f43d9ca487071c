//! The directory's VRF key: it hides user ids in the tree (a node label is a
//! VRF of `user, version`) and, hashed, keys the value commitments.
//!
//! It is a real, persistent key: generated from the operating system's
//! randomness at first use, stored through [`DirectoryStorage`] under
//! [`VRF_SECRET_NAME`], kept in memory afterwards (akd asks for it on every
//! label it computes). Losing it makes every existing entry unreachable;
//! leaking it reveals which users exist, not their keys.

use crate::error::DirectoryError;
use crate::storage::DirectoryStorage;
use akd::ecvrf::{VRFKeyStorage, VRFPublicKey, VrfError};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Name of the VRF secret in [`DirectoryStorage`].
pub const VRF_SECRET_NAME: &str = "vrf-ed25519";

/// akd's VRF key storage, backed by a key loaded once from the store.
#[derive(Clone)]
pub struct PersistentVrf {
    secret: Arc<Zeroizing<[u8; 32]>>,
}

impl PersistentVrf {
    /// Loads the key, or generates and stores it if the store has none.
    pub fn load_or_create<S: DirectoryStorage + ?Sized>(
        storage: &S,
    ) -> Result<Self, DirectoryError> {
        let stored = match storage.get_secret(VRF_SECRET_NAME)? {
            Some(s) => s,
            None => {
                let fresh = crate::root::random_seed()?;
                storage.insert_secret_if_absent(VRF_SECRET_NAME, fresh.as_ref())?
            }
        };
        let secret: [u8; 32] = stored.as_slice().try_into().map_err(|_| {
            DirectoryError::Storage(format!(
                "stored VRF key has {} bytes, expected 32",
                stored.len()
            ))
        })?;
        Ok(Self {
            secret: Arc::new(Zeroizing::new(secret)),
        })
    }

    /// The key from its 32-byte secret, for a caller that keeps it itself
    /// (the server keeps it in a key file, out of the database).
    pub fn from_secret(secret: Zeroizing<[u8; 32]>) -> Self {
        Self {
            secret: Arc::new(secret),
        }
    }

    /// The public half, which clients need to verify proofs.
    pub fn public_key(&self) -> Result<[u8; 32], DirectoryError> {
        let private = akd::ecvrf::VRFPrivateKey::try_from(&self.secret[..])
            .map_err(|e| DirectoryError::Internal(e.to_string()))?;
        Ok(VRFPublicKey::from(&private).to_bytes())
    }
}

impl std::fmt::Debug for PersistentVrf {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("PersistentVrf(..)")
    }
}

#[async_trait::async_trait]
impl VRFKeyStorage for PersistentVrf {
    async fn retrieve(&self) -> Result<Vec<u8>, VrfError> {
        Ok(self.secret.to_vec())
    }
}
