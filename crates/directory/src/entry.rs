//! What the directory publishes for a user: their identity and the whole
//! list of their devices, with the approvals and revocations that say which
//! devices the user (not the server) accepted.
//!
//! ```text
//! value  = cbor({ "v": 2 | 3, "i": identity key, "g": generation, "d": [device, ...],
//!                 "at"?: [attestation, ...] })
//! device = { "id": hex, "k": key, "n": number, "g": generation,
//!            "ap"?: { "by": hex, "sig": bytes },
//!            "rv"?: { "at": number, "by"?: hex, "sig"?: bytes },
//!            "a": {text: text} }
//! ```
//! Devices are sorted by id, each id and each number appears once, optional
//! fields are left out when absent, maps are sorted by key and fields come
//! in declaration order, so one list has exactly one encoding. Decoding
//! re-encodes and refuses anything that is not byte-identical: the value is
//! hashed into the directory, so two encodings of one list would be two
//! different entries. A list without attestations is version 2, as before
//! attestations existed (entries published then stay valid, byte for
//! byte); a list with attestations is version 3.
//!
//! `at` holds the user's accreditation attestations (COSE_Sign1 bytes,
//! [`valise_proto::attestation`]), sorted, each once. The directory does
//! not trust or check them beyond their size: clients verify each under
//! the authority key they pinned.
//!
//! What the fields mean, and which devices count as approved, is in
//! [`crate::identity`]. Every change to a user's devices (enrolment,
//! approval, revocation, identity reset) publishes the new whole list as the
//! user's next version. A revoked device stays in the list, so its key can
//! never silently come back.

use crate::error::DirectoryError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use valise_proto::DeviceId;

/// Version of the encoding of a list with attestations; a reader refuses
/// versions it does not know.
pub const ENTRY_VERSION: u8 = 3;

/// The version of a list without attestations (the encoding before them).
const ENTRY_VERSION_2: u8 = 2;

/// Most attestations one user's entry carries.
pub const MAX_ATTESTATIONS: usize = 64;

/// Most devices (of any status) one user may have in the directory.
pub const MAX_DEVICES: usize = 1024;

/// Largest encoded list accepted (bytes).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Largest signature public key accepted (bytes). Ed25519 keys are 32 bytes;
/// the margin leaves room for a post-quantum signature scheme later.
pub const MAX_KEY_BYTES: usize = 4096;

/// Largest signature accepted (bytes), with the same margin.
pub const MAX_SIGNATURE_BYTES: usize = 8192;

/// A user's identity: the key at the root of their devices' approvals and
/// how many times it was reset.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identity {
    /// The signature key of the device that founded this identity.
    pub key: SignatureKey,
    /// 1 for the user's first identity, +1 for each reset by the administrator.
    pub generation: u32,
}

/// An existing device's signature over a new device (see
/// [`crate::identity::approval_message`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Approval {
    /// The approving device.
    pub by: DeviceId,
    #[serde(rename = "sig")]
    pub signature: SignatureKey,
}

/// Why and when a device stopped counting.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Revocation {
    /// The device numbers below this one existed when it was revoked: only
    /// they can hold an approval made by this device.
    pub at: u64,
    /// The device of the user that revoked it; absent for the server
    /// (`valised admin revoke`, or an identity reset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<DeviceId>,
    /// That device's signature (see [`crate::identity::revocation_message`]).
    #[serde(rename = "sig", default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<SignatureKey>,
}

/// One device of a user as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    #[serde(rename = "id")]
    pub device: DeviceId,
    /// The device's MLS signature public key (Ed25519, raw bytes).
    #[serde(rename = "k")]
    pub signature_key: SignatureKey,
    /// Order of enrolment among the user's devices, from 0; unique.
    #[serde(rename = "n")]
    pub number: u64,
    /// The identity generation the device was enrolled under.
    #[serde(rename = "g")]
    pub generation: u32,
    #[serde(rename = "ap", default, skip_serializing_if = "Option::is_none")]
    pub approval: Option<Approval>,
    #[serde(rename = "rv", default, skip_serializing_if = "Option::is_none")]
    pub revocation: Option<Revocation>,
    /// Reserved for attributes such as accreditation; empty for now.
    #[serde(rename = "a", default)]
    pub attributes: BTreeMap<String, String>,
}

impl DeviceEntry {
    /// A device as enrolled: not approved, not revoked.
    pub fn new(device: DeviceId, signature_key: Vec<u8>, number: u64, generation: u32) -> Self {
        Self {
            device,
            signature_key: SignatureKey(signature_key),
            number,
            generation,
            approval: None,
            revocation: None,
            attributes: BTreeMap::new(),
        }
    }
}

/// A public key or signature, carried as a CBOR byte string.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SignatureKey(pub Vec<u8>);

impl SignatureKey {
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }
}

impl std::fmt::Debug for SignatureKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "SignatureKey(")?;
        self.0
            .iter()
            .take(8)
            .try_for_each(|b| write!(f, "{b:02x}"))?;
        write!(f, "…, {} B)", self.0.len())
    }
}

impl Serialize for SignatureKey {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(&self.0)
    }
}

impl<'de> Deserialize<'de> for SignatureKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> serde::de::Visitor<'de> for V {
            type Value = SignatureKey;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<SignatureKey, E> {
                Ok(SignatureKey(v.to_vec()))
            }
            fn visit_byte_buf<E: serde::de::Error>(self, v: Vec<u8>) -> Result<SignatureKey, E> {
                Ok(SignatureKey(v))
            }
        }
        d.deserialize_bytes(V)
    }
}

/// A user's identity and devices as published: devices sorted by id, each
/// id and number once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceList {
    identity: Identity,
    devices: Vec<DeviceEntry>,
    /// Sorted, each once.
    attestations: Vec<SignatureKey>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u8,
    i: SignatureKey,
    g: u32,
    d: Vec<DeviceEntry>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    at: Vec<SignatureKey>,
}

impl DeviceList {
    /// Builds a list from devices in any order; refuses duplicate ids,
    /// numbers that are not exactly 0, 1, 2, … (no gap a server could fill
    /// later), a revocation outside the device's own number and the next
    /// one, empty or oversized keys and signatures, a generation 0 and too
    /// many devices.
    pub fn new(identity: Identity, mut devices: Vec<DeviceEntry>) -> Result<Self, DirectoryError> {
        let bad = |m: String| Err(DirectoryError::BadEntry(m));
        devices.sort_by_key(|d| d.device);
        if devices.windows(2).any(|w| w[0].device == w[1].device) {
            return bad("a device id appears twice".into());
        }
        let mut numbers: Vec<u64> = devices.iter().map(|d| d.number).collect();
        numbers.sort_unstable();
        if !numbers.iter().copied().eq(0..numbers.len() as u64) {
            return bad("device numbers are not 0, 1, 2, … each once".into());
        }
        let next = numbers.len() as u64;
        if let Some(d) = devices.iter().find(|d| {
            d.revocation
                .as_ref()
                .is_some_and(|r| r.at <= d.number || r.at > next)
        }) {
            return bad(format!(
                "device {} is revoked at a number outside {}..={next}",
                d.device,
                d.number + 1
            ));
        }
        if devices.len() > MAX_DEVICES {
            return bad(format!("{} devices, at most {MAX_DEVICES}", devices.len()));
        }
        if identity.generation == 0 || devices.iter().any(|d| d.generation == 0) {
            return bad("identity generations start at 1".into());
        }
        let key_ok = |k: &SignatureKey| !k.0.is_empty() && k.0.len() <= MAX_KEY_BYTES;
        let sig_ok = |s: &SignatureKey| !s.0.is_empty() && s.0.len() <= MAX_SIGNATURE_BYTES;
        if !key_ok(&identity.key) {
            return bad(format!(
                "the identity key has {} bytes",
                identity.key.0.len()
            ));
        }
        for d in &devices {
            let sigs_ok = d.approval.as_ref().is_none_or(|a| sig_ok(&a.signature))
                && d.revocation
                    .as_ref()
                    .and_then(|r| r.signature.as_ref())
                    .is_none_or(sig_ok);
            if !key_ok(&d.signature_key) || !sigs_ok {
                return bad(format!(
                    "device {} has an empty or oversized key or signature",
                    d.device
                ));
            }
        }
        Ok(Self {
            identity,
            devices,
            attestations: Vec::new(),
        })
    }

    /// The same list carrying these attestations (in any order; repeats
    /// are kept once).
    pub fn with_attestations(mut self, mut at: Vec<Vec<u8>>) -> Result<Self, DirectoryError> {
        at.sort();
        at.dedup();
        if at.len() > MAX_ATTESTATIONS {
            return Err(DirectoryError::BadEntry(format!(
                "{} attestations, at most {MAX_ATTESTATIONS}",
                at.len()
            )));
        }
        if at
            .iter()
            .any(|a| a.is_empty() || a.len() > valise_proto::attestation::MAX_ATTESTATION_BYTES)
        {
            return Err(DirectoryError::BadEntry(
                "an empty or oversized attestation".into(),
            ));
        }
        self.attestations = at.into_iter().map(SignatureKey).collect();
        Ok(self)
    }

    /// The user's accreditation attestations, unverified.
    pub fn attestations(&self) -> impl Iterator<Item = &[u8]> {
        self.attestations.iter().map(SignatureKey::as_bytes)
    }

    /// A new user's list: one device, founding the identity (generation 1).
    pub fn founded_by(device: DeviceId, signature_key: Vec<u8>) -> Result<Self, DirectoryError> {
        let identity = Identity {
            key: SignatureKey(signature_key.clone()),
            generation: 1,
        };
        Self::new(
            identity,
            vec![DeviceEntry::new(device, signature_key, 0, 1)],
        )
    }

    /// The user's identity.
    pub fn identity(&self) -> &Identity {
        &self.identity
    }

    /// The devices, sorted by id.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.devices
    }

    /// The entry for one device, if listed (whatever its status).
    pub fn get(&self, device: &DeviceId) -> Option<&DeviceEntry> {
        self.devices
            .binary_search_by(|d| d.device.cmp(device))
            .ok()
            .and_then(|i| self.devices.get(i))
    }

    /// The number the next enrolled device gets (numbers are 0, 1, 2, …).
    pub fn next_number(&self) -> u64 {
        self.devices.len() as u64
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, DirectoryError> {
        let mut out = Vec::new();
        ciborium::into_writer(
            &Envelope {
                v: if self.attestations.is_empty() {
                    ENTRY_VERSION_2
                } else {
                    ENTRY_VERSION
                },
                i: self.identity.key.clone(),
                g: self.identity.generation,
                d: self.devices.clone(),
                at: self.attestations.clone(),
            },
            &mut out,
        )
        .map_err(|e| DirectoryError::BadEntry(e.to_string()))?;
        Ok(out)
    }

    /// Decodes a canonical encoding; refuses any other bytes.
    pub fn decode(bytes: &[u8]) -> Result<Self, DirectoryError> {
        if bytes.len() > MAX_ENTRY_BYTES {
            return Err(DirectoryError::BadEntry(format!(
                "{} bytes, at most {MAX_ENTRY_BYTES}",
                bytes.len()
            )));
        }
        let mut reader = bytes;
        let env: Envelope = ciborium::from_reader(&mut reader)
            .map_err(|e| DirectoryError::BadEntry(format!("not a device list: {e}")))?;
        if env.v != ENTRY_VERSION && env.v != ENTRY_VERSION_2 {
            return Err(DirectoryError::BadEntry(format!(
                "version {} is not supported (expected {ENTRY_VERSION})",
                env.v
            )));
        }
        let identity = Identity {
            key: env.i,
            generation: env.g,
        };
        let list = Self::new(identity, env.d)?
            .with_attestations(env.at.into_iter().map(|a| a.0).collect())?;
        if list.encode()? != bytes {
            return Err(DirectoryError::BadEntry(
                "not the canonical encoding".into(),
            ));
        }
        Ok(list)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Device `n`, numbered `n - 1` (devices 1, 2, … of a list).
    fn dev(n: u8) -> DeviceEntry {
        DeviceEntry::new(
            DeviceId::from_bytes([n; 8]),
            vec![n; 32],
            u64::from(n) - 1,
            1,
        )
    }

    fn identity() -> Identity {
        Identity {
            key: SignatureKey(vec![1; 32]),
            generation: 1,
        }
    }

    /// A version-3 envelope of [`identity`] written as given, bypassing
    /// [`DeviceList::new`]'s checks: what a hostile server could serve.
    fn raw_v3(d: Vec<DeviceEntry>, at: Vec<SignatureKey>) -> Vec<u8> {
        let mut out = Vec::new();
        let envelope = Envelope {
            v: ENTRY_VERSION,
            i: identity().key,
            g: 1,
            d,
            at,
        };
        ciborium::into_writer(&envelope, &mut out).unwrap();
        out
    }

    #[test]
    fn canonical_round_trip() {
        let mut approved = dev(2);
        approved.approval = Some(Approval {
            by: DeviceId::from_bytes([1; 8]),
            signature: SignatureKey(vec![9; 64]),
        });
        let mut revoked = dev(3);
        revoked.revocation = Some(Revocation {
            at: 3,
            by: None,
            signature: None,
        });
        let a =
            DeviceList::new(identity(), vec![revoked.clone(), approved.clone(), dev(1)]).unwrap();
        let b = DeviceList::new(identity(), vec![dev(1), approved, revoked]).unwrap();
        assert_eq!(a.encode().unwrap(), b.encode().unwrap());
        let bytes = a.encode().unwrap();
        assert_eq!(DeviceList::decode(&bytes).unwrap(), a);
        assert_eq!(a.devices()[0].device, DeviceId::from_bytes([1; 8]));
        assert_eq!(a.next_number(), 3);
    }

    #[test]
    fn attestations_are_carried_sorted_and_lists_without_them_stay_version_2() {
        let list = DeviceList::new(identity(), vec![dev(1)]).unwrap();
        let with = list
            .clone()
            .with_attestations(vec![vec![9; 40], vec![3; 40], vec![9; 40]])
            .unwrap();
        let bytes = with.encode().unwrap();
        let back = DeviceList::decode(&bytes).unwrap();
        assert_eq!(back, with);
        assert_eq!(
            back.attestations().collect::<Vec<_>>(),
            vec![&[3; 40][..], &[9; 40][..]]
        );
        assert_eq!(bytes[3], ENTRY_VERSION);
        // Without attestations, a list is what it was before them.
        let v2 = list.encode().unwrap();
        assert_eq!(v2[3], ENTRY_VERSION_2);
        assert_eq!(DeviceList::decode(&v2).unwrap(), list);
        // Version 2 with attestations, version 3 without, and unsorted
        // attestations are not the one encoding.
        let mut v2_with = bytes.clone();
        v2_with[3] = ENTRY_VERSION_2;
        assert!(DeviceList::decode(&v2_with).is_err());
        let mut v3_without = v2.clone();
        v3_without[3] = ENTRY_VERSION;
        assert!(DeviceList::decode(&v3_without).is_err());
        let unsorted = raw_v3(
            vec![dev(1)],
            vec![SignatureKey(vec![9; 40]), SignatureKey(vec![3; 40])],
        );
        assert!(DeviceList::decode(&unsorted).is_err());
        assert!(list.clone().with_attestations(vec![vec![]]).is_err());
        assert!(
            list.with_attestations((0..=MAX_ATTESTATIONS as u8).map(|i| vec![i]).collect())
                .is_err()
        );
    }

    #[test]
    fn refuses_duplicates_bad_keys_and_non_canonical() {
        assert!(DeviceList::new(identity(), vec![dev(1), dev(1)]).is_err());
        let mut same_number = dev(2);
        same_number.number = 0;
        assert!(DeviceList::new(identity(), vec![dev(1), same_number]).is_err());
        // A gap in the numbers, a revocation outside its device's time.
        assert!(DeviceList::new(identity(), vec![dev(1), dev(3)]).is_err());
        let mut late = dev(2);
        late.revocation = Some(Revocation {
            at: 5,
            by: None,
            signature: None,
        });
        assert!(DeviceList::new(identity(), vec![dev(1), late]).is_err());
        let mut empty_key = dev(3);
        empty_key.signature_key = SignatureKey(vec![]);
        assert!(DeviceList::new(identity(), vec![empty_key]).is_err());
        let mut zero = identity();
        zero.generation = 0;
        assert!(DeviceList::new(zero, vec![dev(1)]).is_err());
        // Unsorted devices on the wire are not the canonical encoding.
        let unsorted = raw_v3(vec![dev(2), dev(1)], vec![]);
        assert_eq!(
            DeviceList::decode(&unsorted).unwrap_err().code(),
            "bad_entry"
        );
        let mut v3 = DeviceList::new(identity(), vec![dev(1)])
            .unwrap()
            .encode()
            .unwrap();
        // The version is the first map value: { "v": 2, ... }
        let pos = v3.iter().position(|&b| b == 0x02).unwrap();
        v3[pos] = 0x04;
        assert!(DeviceList::decode(&v3).is_err());
        assert!(DeviceList::decode(b"").is_err());
        assert!(DeviceList::decode(&[0xff; 10]).is_err());
    }
}
