//! The ciphersuite Valise speaks, and what every leaf declares.

use crate::Refusal;
use openmls::prelude::{Capabilities, Ciphersuite, ExtensionType, LeafNodeParameters};

/// Post-quantum hybrid (X-Wing: X25519 + ML-KEM-768) by default, because
/// diplomatic traffic recorded today must stay secret later (invariant I4).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519;

/// The group-context extension that carries a conversation's policy hash
/// (`valise_proto::policy`).
pub const POLICY_EXTENSION: ExtensionType =
    ExtensionType::Unknown(valise_proto::policy::POLICY_EXTENSION);

/// What every Valise leaf supports: our one suite, the last-resort
/// key-package extension (which must be listed to be used) and the policy
/// extension (every group requires it of its members).
pub fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::LastResort, POLICY_EXTENSION]),
        None,
        None,
    )
}

/// The leaf a device brings to an external commit (a rejoin): openmls
/// would otherwise give it default capabilities, without the policy
/// extension every group requires.
pub fn leaf_parameters() -> LeafNodeParameters {
    LeafNodeParameters::builder()
        .with_capabilities(capabilities())
        .build()
}

/// The ciphersuites a party lets groups and key packages use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Policy {
    pub ciphersuites: Vec<Ciphersuite>,
}

impl Default for Policy {
    /// [`CIPHERSUITE`] only: post-quantum by default (I4); classic suites
    /// only when configured.
    fn default() -> Self {
        Self {
            ciphersuites: vec![CIPHERSUITE],
        }
    }
}

impl Policy {
    pub fn check_suite(&self, cs: Ciphersuite) -> Result<(), Refusal> {
        if self.ciphersuites.contains(&cs) {
            Ok(())
        } else {
            Err(Refusal(format!("ciphersuite {cs:?} is not allowed here")))
        }
    }
}
