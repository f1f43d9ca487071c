//! Key packages: how a device makes them, and the one check that both the
//! server (on upload) and a device (on claim) apply to them.
//!
//! openmls' own validation checks the lifetime against the real clock; this
//! check also takes the caller's clock, so that a party whose clock is
//! shifted (a test build) judges by the time it lives in.

use crate::Refusal;
use crate::credential::{check_names, credential};
use crate::suite::{CIPHERSUITE, Policy, capabilities};
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::{
    KeyPackage, KeyPackageBundle, KeyPackageIn, KeyPackageNewError, Lifetime, OpenMlsProvider,
    ProtocolVersion,
};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::crypto::OpenMlsCrypto;
use std::time::{Duration, UNIX_EPOCH};
use valise_proto::DeviceAddress;

/// How long a key package is valid: 84 days, openmls' default, spelled out
/// so that it does not change under us with an openmls upgrade.
pub const KEY_PACKAGE_LIFETIME_S: u64 = 84 * 24 * 60 * 60;

/// How far back a key package is already valid, for clocks that run behind
/// (openmls' default margin).
const CLOCK_SKEW_S: u64 = 60 * 60;

/// The lifetime of a key package made at `now_s`.
pub fn lifetime(now_s: u64) -> Lifetime {
    Lifetime::init(
        now_s.saturating_sub(CLOCK_SKEW_S),
        now_s.saturating_add(KEY_PACKAGE_LIFETIME_S),
    )
}

/// Makes a key package of `device` at `now_s`, and stores its private keys
/// in `provider`'s storage (where joining a group finds them).
pub fn build(
    provider: &impl OpenMlsProvider,
    signer: &SignatureKeyPair,
    device: &DeviceAddress,
    last_resort: bool,
    now_s: u64,
) -> Result<KeyPackageBundle, KeyPackageNewError> {
    let mut builder = KeyPackage::builder()
        .leaf_node_capabilities(capabilities())
        .key_package_lifetime(lifetime(now_s));
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    builder.build(
        CIPHERSUITE,
        provider,
        signer,
        credential(device, signer.public()),
    )
}

/// A key package that passed [`check`].
#[derive(Debug, Clone)]
pub struct CheckedKeyPackage {
    pub key_package: KeyPackage,
    /// Seconds since the Unix epoch from which nobody may use it.
    pub not_after: u64,
    pub last_resort: bool,
}

/// Checks a key package that should be `expected`'s: its signature, its
/// suite against `policy`, that its credential names exactly `expected`,
/// its signature key when `expected_key` is given, the last_resort
/// extension when `want_last_resort`, and its lifetime at `now_s`.
pub fn check(
    crypto: &impl OpenMlsCrypto,
    policy: &Policy,
    bytes: &[u8],
    expected: &DeviceAddress,
    expected_key: Option<&[u8]>,
    want_last_resort: bool,
    now_s: u64,
) -> Result<CheckedKeyPackage, Refusal> {
    let key_package = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| Refusal(format!("key package does not parse: {e}")))?
        .validate(crypto, ProtocolVersion::Mls10)
        .map_err(|e| Refusal(format!("key package is invalid: {e}")))?;
    policy.check_suite(key_package.ciphersuite())?;
    let leaf = key_package.leaf_node();
    check_names(leaf.credential(), expected)?;
    if expected_key.is_some_and(|key| leaf.signature_key().as_slice() != key) {
        return Err(Refusal::new(
            "key package signature key is not the device's",
        ));
    }
    let last_resort = key_package.last_resort();
    if want_last_resort && !last_resort {
        return Err(Refusal::new(
            "last-resort key package lacks the last_resort extension",
        ));
    }
    let lifetime = key_package.life_time();
    if !lifetime.has_acceptable_range() {
        return Err(Refusal::new("key package lifetime is too long"));
    }
    let now = UNIX_EPOCH
        .checked_add(Duration::from_secs(now_s))
        .ok_or_else(|| Refusal::new("the clock is out of range"))?;
    lifetime
        .validate_with_time(now)
        .map_err(|e| Refusal(format!("key package lifetime: {e}")))?;
    let not_after = lifetime.not_after();
    Ok(CheckedKeyPackage {
        key_package,
        not_after,
        last_resort,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use openmls::prelude::tls_codec::Serialize as _;
    use openmls::prelude::{Capabilities, Ciphersuite, ExtensionType};
    use openmls_libcrux_crypto::Provider;
    use valise_proto::{DeviceId, UserId};

    /// A day in May 2026, seconds since the Unix epoch.
    const NOW: u64 = 1_780_000_000;

    struct Device {
        addr: DeviceAddress,
        signer: SignatureKeyPair,
        provider: Provider,
    }

    fn device(user: &str, id: u8) -> Device {
        let provider = Provider::default();
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
        signer.store(provider.storage()).unwrap();
        Device {
            addr: DeviceAddress::new(UserId::parse(user).unwrap(), DeviceId::from_bytes([id; 8])),
            signer,
            provider,
        }
    }

    impl Device {
        fn key_package(&self, last_resort: bool, now_s: u64) -> Vec<u8> {
            let bundle = build(&self.provider, &self.signer, &self.addr, last_resort, now_s);
            bundle
                .unwrap()
                .key_package()
                .tls_serialize_detached()
                .unwrap()
        }

        fn check(
            &self,
            bytes: &[u8],
            want_last_resort: bool,
            now_s: u64,
        ) -> Result<CheckedKeyPackage, Refusal> {
            let key = self.signer.public();
            let crypto = self.provider.crypto();
            check(
                crypto,
                &Policy::default(),
                bytes,
                &self.addr,
                Some(key),
                want_last_resort,
                now_s,
            )
        }
    }

    /// The real clock: openmls' own validation reads it.
    fn real_now() -> u64 {
        std::time::SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs()
    }

    #[test]
    fn a_built_key_package_passes_the_check() {
        let bob = device("bob@mfa.example", 2);
        let now = real_now();
        let kp = bob.key_package(false, now);
        let checked = bob.check(&kp, false, now).unwrap();
        assert_eq!(checked.not_after, now + KEY_PACKAGE_LIFETIME_S);
        assert!(!checked.last_resort);
        assert_eq!(checked.key_package.ciphersuite(), CIPHERSUITE);
        // Any key, when none is expected (a device claiming a package
        // checks the key against the key directory afterwards).
        let crypto = bob.provider.crypto();
        check(crypto, &Policy::default(), &kp, &bob.addr, None, false, now).unwrap();

        let lr = bob.key_package(true, now);
        assert!(bob.check(&lr, true, now).unwrap().last_resort);
    }

    #[test]
    fn a_key_package_of_another_device_or_key_is_refused() {
        let alice = device("alice@mfa.example", 1);
        let bob = device("bob@mfa.example", 2);
        let now = real_now();
        let kp = bob.key_package(false, now);
        let crypto = bob.provider.crypto();
        let policy = Policy::default();
        let (akey, bkey) = (alice.signer.public(), bob.signer.public());
        assert!(check(crypto, &policy, &kp, &alice.addr, Some(bkey), false, now).is_err());
        assert!(check(crypto, &policy, &kp, &alice.addr, None, false, now).is_err());
        assert!(check(crypto, &policy, &kp, &bob.addr, Some(akey), false, now).is_err());
        let mut tampered = kp.clone();
        let n = tampered.len();
        tampered[n - 5] ^= 1;
        assert!(bob.check(&tampered, false, now).is_err());
    }

    #[test]
    fn a_key_package_in_another_suite_is_refused() {
        let bob = device("bob@mfa.example", 2);
        let classic = Ciphersuite::MLS_128_DHKEMX25519_AES128GCM_SHA256_Ed25519;
        let kp = KeyPackage::builder()
            .leaf_node_capabilities(Capabilities::new(
                None,
                Some(&[classic]),
                Some(&[ExtensionType::LastResort]),
                None,
                None,
            ))
            .build(
                classic,
                &bob.provider,
                &bob.signer,
                credential(&bob.addr, bob.signer.public()),
            )
            .unwrap()
            .key_package()
            .tls_serialize_detached()
            .unwrap();
        let now = real_now();
        let refusal = bob.check(&kp, false, now).unwrap_err();
        assert!(refusal.0.contains("not allowed"), "{refusal}");
        let both = Policy {
            ciphersuites: vec![CIPHERSUITE, classic],
        };
        let crypto = bob.provider.crypto();
        check(crypto, &both, &kp, &bob.addr, None, false, now).unwrap();
    }

    #[test]
    fn a_one_time_key_package_is_not_a_last_resort_one() {
        let bob = device("bob@mfa.example", 2);
        let now = real_now();
        let kp = bob.key_package(false, now);
        let refusal = bob.check(&kp, true, now).unwrap_err();
        assert!(refusal.0.contains("last_resort"), "{refusal}");
    }

    #[test]
    fn a_key_package_is_valid_only_within_its_lifetime() {
        let bob = device("bob@mfa.example", 2);
        let made = real_now();
        let kp = bob.key_package(false, made);
        let not_after = made + KEY_PACKAGE_LIFETIME_S;
        bob.check(&kp, false, not_after - 1).unwrap();
        let expired = bob.check(&kp, false, not_after).unwrap_err();
        assert!(expired.0.contains("lifetime"), "{expired}");
        bob.check(&kp, false, made - CLOCK_SKEW_S).unwrap();
        let early = bob.check(&kp, false, made - CLOCK_SKEW_S - 1).unwrap_err();
        assert!(early.0.contains("lifetime"), "{early}");
    }

    #[test]
    fn the_lifetime_is_openmls_default_from_the_callers_clock() {
        let lifetime = lifetime(NOW);
        assert_eq!(lifetime.not_before(), NOW - 3600);
        assert_eq!(lifetime.not_after(), NOW + 84 * 86_400);
        assert!(lifetime.has_acceptable_range());
    }
}
