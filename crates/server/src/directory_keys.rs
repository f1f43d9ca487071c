//! The key directory's two secrets: the Ed25519 seed that signs every epoch
//! root (clients pin its public half) and the VRF key that hides user ids
//! in the tree. They live in key files of the data directory
//! ([`crate::datadir`]), never in the database, so that a copy of the
//! database or of its backups cannot sign roots.

use crate::invite::{RandomError, fill_random};
use valise_directory::vrf::PersistentVrf;
use valise_directory::{DirectoryKey, RootSigner};
use zeroize::Zeroizing;

/// Length of each secret.
pub const SECRET_LEN: usize = 32;

/// The directory's secret keys, held in memory by the running server.
pub struct DirectoryKeys {
    root: Zeroizing<[u8; SECRET_LEN]>,
    vrf: Zeroizing<[u8; SECRET_LEN]>,
}

impl std::fmt::Debug for DirectoryKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "DirectoryKeys({})", self.public_key())
    }
}

impl DirectoryKeys {
    /// Fresh keys from the operating system's random source.
    pub fn generate() -> Result<Self, RandomError> {
        let mut root = Zeroizing::new([0u8; SECRET_LEN]);
        let mut vrf = Zeroizing::new([0u8; SECRET_LEN]);
        fill_random(root.as_mut())?;
        fill_random(vrf.as_mut())?;
        Ok(Self { root, vrf })
    }

    pub fn from_secrets(
        root: Zeroizing<[u8; SECRET_LEN]>,
        vrf: Zeroizing<[u8; SECRET_LEN]>,
    ) -> Self {
        Self { root, vrf }
    }

    /// The root signing key's seed, to write to its key file.
    pub fn root_secret(&self) -> &[u8; SECRET_LEN] {
        &self.root
    }

    /// The VRF secret, to write to its key file.
    pub fn vrf_secret(&self) -> &[u8; SECRET_LEN] {
        &self.vrf
    }

    /// What signs the roots.
    pub fn signer(&self) -> RootSigner {
        RootSigner::from_seed(&self.root)
    }

    /// The VRF key, as akd takes it.
    pub fn vrf(&self) -> PersistentVrf {
        PersistentVrf::from_secret(self.vrf.clone())
    }

    /// The public key clients pin.
    pub fn public_key(&self) -> DirectoryKey {
        self.signer().public_key()
    }
}
