//! akd's cryptographic configuration, with Valise's own domain label.
//!
//! `ExperimentalConfiguration` is akd's current scheme (blake3, VRF-hidden
//! labels, commitments); the label separates Valise's hashes from any other
//! deployment of akd, so a proof made for another directory never verifies
//! here. Changing the label makes a new, incompatible directory.

use akd::configuration::{DomainLabel, ExperimentalConfiguration};

/// Domain separator of every hash in a Valise directory.
#[derive(Clone)]
pub struct ValiseDomain;

impl DomainLabel for ValiseDomain {
    fn domain_label() -> &'static [u8] {
        b"valise/directory/v1"
    }
}

/// The akd configuration used by the server and every client.
pub type Config = ExperimentalConfiguration<ValiseDomain>;
