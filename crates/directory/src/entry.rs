//! What the directory publishes for a user: the whole list of their devices.
//!
//! ```text
//! value = cbor({ "v": 1, "d": [ { "id": hex, "k": bytes, "s": "active"|"revoked", "a": {text: text} }, ... ] })
//! ```
//! Devices are sorted by id, each id appears once, maps are sorted by key and
//! fields come in declaration order, so one list has exactly one encoding.
//! Decoding re-encodes and refuses anything that is not byte-identical: the
//! value is hashed into the directory and shown as a safety code, so two
//! encodings of one list would be two different entries.
//!
//! Every change to a user's devices (enrolment, revocation, key change)
//! publishes the new whole list as the user's next version. A revoked device
//! stays in the list as `revoked`, so its key can never silently come back.

use crate::error::DirectoryError;
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use std::collections::BTreeMap;
use valise_proto::DeviceId;

/// Version of the encoding; a reader refuses versions it does not know.
pub const ENTRY_VERSION: u8 = 1;

/// Most devices (active or revoked) one user may have in the directory.
pub const MAX_DEVICES: usize = 1024;

/// Largest encoded list accepted (bytes).
pub const MAX_ENTRY_BYTES: usize = 256 * 1024;

/// Largest signature public key accepted (bytes). Ed25519 keys are 32 bytes;
/// the margin leaves room for a post-quantum signature scheme later.
pub const MAX_KEY_BYTES: usize = 4096;

/// Whether a device may be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeviceStatus {
    /// Enrolled and usable.
    Active,
    /// Revoked: peers must not add it nor accept anything it signs.
    Revoked,
}

/// One device of a user as published.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceEntry {
    #[serde(rename = "id")]
    pub device: DeviceId,
    /// The device's MLS signature public key (Ed25519, raw bytes).
    #[serde(rename = "k")]
    pub signature_key: SignatureKey,
    #[serde(rename = "s")]
    pub status: DeviceStatus,
    /// Reserved for attributes such as accreditation; empty for now.
    #[serde(rename = "a", default)]
    pub attributes: BTreeMap<String, String>,
}

impl DeviceEntry {
    /// An active device with no attributes.
    pub fn active(device: DeviceId, signature_key: Vec<u8>) -> Self {
        Self {
            device,
            signature_key: SignatureKey(signature_key),
            status: DeviceStatus::Active,
            attributes: BTreeMap::new(),
        }
    }
}

/// A signature public key, carried as a CBOR byte string.
#[derive(Clone, PartialEq, Eq, Hash)]
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

/// A user's devices as published: sorted by device id, each id once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DeviceList {
    devices: Vec<DeviceEntry>,
}

#[derive(Serialize, Deserialize)]
struct Envelope {
    v: u8,
    d: Vec<DeviceEntry>,
}

impl DeviceList {
    /// Builds a list from devices in any order; refuses duplicate ids, empty
    /// or oversized keys and too many devices.
    pub fn new(mut devices: Vec<DeviceEntry>) -> Result<Self, DirectoryError> {
        devices.sort_by_key(|d| d.device);
        if devices.windows(2).any(|w| w[0].device == w[1].device) {
            return Err(DirectoryError::BadEntry("a device id appears twice".into()));
        }
        if devices.len() > MAX_DEVICES {
            return Err(DirectoryError::BadEntry(format!(
                "{} devices, at most {MAX_DEVICES}",
                devices.len()
            )));
        }
        if let Some(d) = devices
            .iter()
            .find(|d| d.signature_key.0.is_empty() || d.signature_key.0.len() > MAX_KEY_BYTES)
        {
            return Err(DirectoryError::BadEntry(format!(
                "device {} has a signature key of {} bytes",
                d.device,
                d.signature_key.0.len()
            )));
        }
        Ok(Self { devices })
    }

    /// The devices, sorted by id.
    pub fn devices(&self) -> &[DeviceEntry] {
        &self.devices
    }

    /// The entry for one device, if listed (active or revoked).
    pub fn get(&self, device: &DeviceId) -> Option<&DeviceEntry> {
        self.devices
            .binary_search_by(|d| d.device.cmp(device))
            .ok()
            .and_then(|i| self.devices.get(i))
    }

    /// The key of an active device: what a client checks before using a
    /// peer's key, or accepting something signed by it.
    pub fn active_key(&self, device: &DeviceId) -> Option<&[u8]> {
        self.get(device)
            .filter(|d| d.status == DeviceStatus::Active)
            .map(|d| d.signature_key.as_bytes())
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, DirectoryError> {
        let mut out = Vec::new();
        ciborium::into_writer(
            &Envelope {
                v: ENTRY_VERSION,
                d: self.devices.clone(),
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
        if env.v != ENTRY_VERSION {
            return Err(DirectoryError::BadEntry(format!(
                "version {} is not supported (expected {ENTRY_VERSION})",
                env.v
            )));
        }
        let list = Self::new(env.d)?;
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

    fn dev(n: u8) -> DeviceEntry {
        DeviceEntry::active(DeviceId::from_bytes([n; 8]), vec![n; 32])
    }

    #[test]
    fn canonical_round_trip() {
        let a = DeviceList::new(vec![dev(2), dev(1)]).unwrap();
        let b = DeviceList::new(vec![dev(1), dev(2)]).unwrap();
        assert_eq!(a.encode().unwrap(), b.encode().unwrap());
        let bytes = a.encode().unwrap();
        assert_eq!(DeviceList::decode(&bytes).unwrap(), a);
        assert_eq!(a.devices()[0].device, DeviceId::from_bytes([1; 8]));
        assert_eq!(
            a.active_key(&DeviceId::from_bytes([2; 8])),
            Some(&[2u8; 32][..])
        );
    }

    #[test]
    fn refuses_duplicates_bad_keys_and_non_canonical() {
        assert!(DeviceList::new(vec![dev(1), dev(1)]).is_err());
        let mut empty_key = dev(3);
        empty_key.signature_key = SignatureKey(vec![]);
        assert!(DeviceList::new(vec![empty_key]).is_err());
        // Unsorted devices on the wire are not the canonical encoding.
        let mut out = Vec::new();
        ciborium::into_writer(
            &Envelope {
                v: ENTRY_VERSION,
                d: vec![dev(2), dev(1)],
            },
            &mut out,
        )
        .unwrap();
        assert_eq!(DeviceList::decode(&out).unwrap_err().code(), "bad_entry");
        let mut v2 = DeviceList::new(vec![dev(1)]).unwrap().encode().unwrap();
        // The version is the first map value: { "v": 1, ... }
        let pos = v2.iter().position(|&b| b == 0x01).unwrap();
        v2[pos] = 0x02;
        assert!(DeviceList::decode(&v2).is_err());
        assert!(DeviceList::decode(b"").is_err());
        assert!(DeviceList::decode(&[0xff; 10]).is_err());
    }

    #[test]
    fn revoked_devices_have_no_active_key() {
        let mut d = dev(4);
        d.status = DeviceStatus::Revoked;
        let list = DeviceList::new(vec![d]).unwrap();
        let id = DeviceId::from_bytes([4; 8]);
        assert!(list.get(&id).is_some());
        assert_eq!(list.active_key(&id), None);
    }
}
