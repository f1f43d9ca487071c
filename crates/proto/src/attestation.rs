//! Accreditation attestations: the security officer's statement, signed
//! with the organisation's offline **authority key** (never a server key),
//! that a user (or one of their devices) may read letters up to a label
//! until a date. The server publishes them in the user's key-directory
//! entry; clients verify them under the authority key they pinned at
//! enrolment, so a server can neither forge, alter nor extend one.
//!
//! ```text
//! bytes    --UnverifiedAttestation::decode-->  structure, one encoding, EdDSA
//!          --verify(pinned AuthorityKey)----->  Accreditation (signed claims)
//!          --covers(user, device, label, now)-> accredited or not
//! ```
//!
//! The encoding is a tagged COSE_Sign1 (RFC 9052): protected header
//! `{1: -8 (EdDSA), 3: "application/valise-attestation+cbor", 4: SHA-256
//! of the authority's public key}`, empty unprotected header, external AAD
//! `"valise-attestation-v1"`, and as payload the canonical CBOR
//! [`Accreditation`] (see docs/PROTOCOL.md, "Accreditation attestations").

use crate::id::{DeviceId, UserId};
use crate::marking::Label;
use coset::{CoseSign1, CoseSign1Builder, HeaderBuilder, TaggedCborSerializable};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

/// External AAD of every attestation signature: a signature made for
/// anything else by the same key is never an attestation.
pub const ATTESTATION_AAD: &[u8] = b"valise-attestation-v1";
/// The content type in the protected header.
pub const CONTENT_TYPE: &str = "application/valise-attestation+cbor";
/// Largest attestation read at all.
pub const MAX_ATTESTATION_BYTES: usize = 4096;
/// How far in the future an issue time may be (clocks differ).
pub const CLOCK_SKEW_S: i64 = 300;
/// First line of an authority key file.
const KEY_FILE_HEADER: &str = "valise-authority-key-v1";

/// Why bytes are not a valid attestation. Never quotes the attestation.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AttestationError {
    #[error("attestation is not a COSE_Sign1 in its one encoding: {0}")]
    Encoding(&'static str),
    #[error("attestation is not signed by the pinned accreditation authority")]
    Signature,
    #[error("authority key: {0}")]
    Key(&'static str),
}

/// What the security officer attests: `user` (only on `device`, if
/// named) is cleared for `label` and every label it dominates, until
/// `not_after_s` included. Fields in canonical key order.
#[derive(Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Accreditation {
    #[serde(rename = "d", default, skip_serializing_if = "Option::is_none")]
    pub device: Option<DeviceId>,
    /// Unix seconds.
    #[serde(rename = "i")]
    pub issued_at_s: i64,
    #[serde(rename = "l")]
    pub label: Label,
    /// Unix seconds, the last second it is valid.
    #[serde(rename = "n")]
    pub not_after_s: i64,
    #[serde(rename = "u")]
    pub user: UserId,
}

impl std::fmt::Debug for Accreditation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Accreditation")
            .field("user", &self.user)
            .field("device", &self.device)
            .field("label", &self.label)
            .field("not_after_s", &self.not_after_s)
            .finish_non_exhaustive()
    }
}

impl Accreditation {
    /// Whether this (verified) accreditation clears `user`'s `device` for
    /// `label` at `now_s`.
    pub fn covers(&self, user: &UserId, device: &DeviceId, label: &Label, now_s: i64) -> bool {
        self.user == *user
            && self.device.is_none_or(|d| d == *device)
            && self.issued_at_s <= now_s.saturating_add(CLOCK_SKEW_S)
            && now_s <= self.not_after_s
            && self.label.dominates(label)
    }

    /// Signs it with the authority key: the attestation's bytes.
    pub fn sign(&self, key: &AuthoritySecret) -> Result<Vec<u8>, AttestationError> {
        let mut payload = Vec::new();
        ciborium::into_writer(self, &mut payload)
            .map_err(|_| AttestationError::Encoding("cannot encode the claims"))?;
        let protected = HeaderBuilder::new()
            .algorithm(coset::iana::Algorithm::EdDSA)
            .content_type(CONTENT_TYPE.into())
            .key_id(key.public().fingerprint().to_vec())
            .build();
        CoseSign1Builder::new()
            .protected(protected)
            .payload(payload)
            .create_signature(ATTESTATION_AAD, |tbs| key.0.sign(tbs).to_bytes().to_vec())
            .build()
            .to_tagged_vec()
            .map_err(|_| AttestationError::Encoding("cannot encode"))
    }
}

/// An attestation as it arrived: well formed, not yet trusted.
#[derive(Debug)]
pub struct UnverifiedAttestation {
    sign1: CoseSign1,
    claims: Accreditation,
}

impl UnverifiedAttestation {
    /// Parses an attestation, refusing every encoding but the one
    /// [`Accreditation::sign`] writes (it is hashed into the directory).
    pub fn decode(bytes: &[u8]) -> Result<Self, AttestationError> {
        let bad = AttestationError::Encoding;
        if bytes.len() > MAX_ATTESTATION_BYTES {
            return Err(bad("too large"));
        }
        let sign1 = CoseSign1::from_tagged_slice(bytes).map_err(|_| bad("not a COSE_Sign1"))?;
        let header = &sign1.protected.header;
        if header.alg != Some(coset::Algorithm::Assigned(coset::iana::Algorithm::EdDSA)) {
            return Err(bad("not signed with EdDSA"));
        }
        if header.content_type != Some(coset::ContentType::Text(CONTENT_TYPE.into())) {
            return Err(bad("not an attestation's content type"));
        }
        if !sign1.unprotected.is_empty() {
            return Err(bad("an unprotected header"));
        }
        let payload = sign1.payload.as_deref().ok_or(bad("no payload"))?;
        let claims: Accreditation =
            ciborium::from_reader(payload).map_err(|_| bad("claims are not an accreditation"))?;
        let mut again = Vec::new();
        ciborium::into_writer(&claims, &mut again).map_err(|_| bad("cannot encode"))?;
        if again != payload {
            return Err(bad("claims not in their canonical encoding"));
        }
        let this = Self { sign1, claims };
        if this.sign1.clone().to_tagged_vec().ok().as_deref() != Some(bytes) {
            return Err(bad("not the canonical encoding"));
        }
        Ok(this)
    }

    /// What it claims, before any check: whose entry it belongs in.
    pub fn claimed(&self) -> &Accreditation {
        &self.claims
    }

    /// The claims, if the signature verifies under `authority`.
    pub fn verify(self, authority: &AuthorityKey) -> Result<Accreditation, AttestationError> {
        self.sign1
            .verify_signature(ATTESTATION_AAD, |sig, data| {
                let sig = Signature::from_slice(sig).map_err(|_| AttestationError::Signature)?;
                authority
                    .0
                    .verify_strict(data, &sig)
                    .map_err(|_| AttestationError::Signature)
            })
            .map(|()| self.claims)
    }
}

/// The accreditation authority's public key (Ed25519), which clients pin.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthorityKey(VerifyingKey);

impl AuthorityKey {
    /// From its 64 hex digits.
    pub fn parse(hex_key: &str) -> Result<Self, AttestationError> {
        let bytes: [u8; 32] = hex::decode(hex_key.trim())
            .ok()
            .and_then(|b| b.try_into().ok())
            .ok_or(AttestationError::Key("not 64 hex digits"))?;
        VerifyingKey::from_bytes(&bytes)
            .map(Self)
            .map_err(|_| AttestationError::Key("not an Ed25519 public key"))
    }

    /// SHA-256 of the key: what a careful user compares out of band.
    pub fn fingerprint(&self) -> [u8; 32] {
        Sha256::digest(self.0.as_bytes()).into()
    }

    /// The fingerprint in hex.
    pub fn fingerprint_hex(&self) -> String {
        hex::encode(self.fingerprint())
    }
}

impl std::fmt::Display for AuthorityKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0.as_bytes()))
    }
}

/// The authority's signing key: kept offline by the security officer,
/// wiped from memory when dropped, never printed.
pub struct AuthoritySecret(SigningKey);

impl std::fmt::Debug for AuthoritySecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AuthoritySecret(***)")
    }
}

impl AuthoritySecret {
    /// A fresh key from the operating system's random generator.
    pub fn generate() -> Self {
        let mut seed = Zeroizing::new([0u8; 32]);
        rand::fill(&mut seed[..]);
        Self(SigningKey::from_bytes(&seed))
    }

    pub fn public(&self) -> AuthorityKey {
        AuthorityKey(self.0.verifying_key())
    }

    /// The key file's text: a header line, then the secret in hex.
    pub fn to_file_text(&self) -> Zeroizing<String> {
        Zeroizing::new(format!(
            "{KEY_FILE_HEADER}\n{}\n",
            hex::encode(self.0.as_bytes())
        ))
    }

    /// Reads a key file's text.
    pub fn from_file_text(text: &str) -> Result<Self, AttestationError> {
        let mut lines = text.lines();
        if lines.next() != Some(KEY_FILE_HEADER) {
            return Err(AttestationError::Key("not a Valise authority key file"));
        }
        let digits = Zeroizing::new(lines.next().unwrap_or_default().trim().to_owned());
        let mut seed = Zeroizing::new([0u8; 32]);
        hex::decode_to_slice(digits.as_str(), &mut seed[..])
            .map_err(|_| AttestationError::Key("the secret is not 64 hex digits"))?;
        Ok(Self(SigningKey::from_bytes(&seed)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn alice() -> UserId {
        UserId::parse("alice@mfa.example").unwrap()
    }

    fn claims() -> Accreditation {
        Accreditation {
            device: None,
            issued_at_s: 1_800_000_000,
            label: Label::parse("EU RESTRICTED").unwrap(),
            not_after_s: 1_900_000_000,
            user: alice(),
        }
    }

    #[test]
    fn signed_verified_and_checked() {
        let so = AuthoritySecret::generate();
        let bytes = claims().sign(&so).unwrap();
        let got = UnverifiedAttestation::decode(&bytes)
            .unwrap()
            .verify(&so.public())
            .unwrap();
        assert_eq!(got, claims());
        let phone = DeviceId::from_bytes([1; 8]);
        let limite = Label::parse("LIMITE").unwrap();
        assert!(got.covers(&alice(), &phone, &limite, 1_850_000_000));
        // Expired, not yet issued, another user, a label it does not dominate.
        assert!(!got.covers(&alice(), &phone, &limite, 1_900_000_001));
        assert!(!got.covers(&alice(), &phone, &limite, 1_799_000_000));
        let bob = UserId::parse("bob@mfa.example").unwrap();
        assert!(!got.covers(&bob, &phone, &limite, 1_850_000_000));
        let red = Label::parse("TLP:RED").unwrap();
        assert!(!got.covers(&alice(), &phone, &red, 1_850_000_000));
        // One device only.
        let mut one = claims();
        one.device = Some(phone);
        assert!(one.covers(&alice(), &phone, &limite, 1_850_000_000));
        assert!(!one.covers(
            &alice(),
            &DeviceId::from_bytes([2; 8]),
            &limite,
            1_850_000_000
        ));
    }

    #[test]
    fn another_key_or_a_changed_byte_is_refused() {
        let so = AuthoritySecret::generate();
        let server = AuthoritySecret::generate();
        let forged = claims().sign(&server).unwrap();
        assert_eq!(
            UnverifiedAttestation::decode(&forged)
                .unwrap()
                .verify(&so.public()),
            Err(AttestationError::Signature)
        );
        let bytes = claims().sign(&so).unwrap();
        for i in 0..bytes.len() {
            let mut b = bytes.clone();
            b[i] ^= 0x01;
            if let Ok(a) = UnverifiedAttestation::decode(&b) {
                assert!(a.verify(&so.public()).is_err(), "byte {i}");
            }
        }
    }

    #[test]
    fn key_file_round_trip_and_debug_hides_the_secret() {
        let so = AuthoritySecret::generate();
        let text = so.to_file_text();
        let back = AuthoritySecret::from_file_text(&text).unwrap();
        assert_eq!(back.public(), so.public());
        assert_eq!(format!("{so:?}"), "AuthoritySecret(***)");
        assert!(AuthoritySecret::from_file_text("nope\n00").is_err());
        let public = so.public().to_string();
        assert_eq!(AuthorityKey::parse(&public).unwrap(), so.public());
        assert!(AuthorityKey::parse("abcd").is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in prop::collection::vec(any::<u8>(), 0..512)) {
            if let Ok(a) = UnverifiedAttestation::decode(&b) {
                prop_assert!(a.verify(&AuthoritySecret::generate().public()).is_err());
            }
        }
    }
}
