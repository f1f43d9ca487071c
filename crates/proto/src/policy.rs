//! A conversation's policy record: its handling ceiling, the highest
//! [`Label`] a letter there may carry. Members share the record inside the
//! encryption (with the conversation's settings); the MLS group context
//! holds only its salted hash, in a private-use extension every leaf must
//! support, so the hub that follows the group's public state learns that a
//! policy exists and nothing of it.
//!
//! ```text
//! record    = cbor({"c": label, "s": bstr .size 32})   canonical, keys in order
//! hash      = SHA-256("valise policy record v1" || record)
//! extension = type 0xF1A5 in the GroupContext, extension_data = hash (32 bytes)
//! ```
//! The salt is fresh per conversation: without it the hash of a catalogue
//! of a dozen markings would name the ceiling to anyone holding the group
//! context. Members compare the record they received with the hash of the
//! epoch they are in; see `valise_client::ceiling` for what follows.

use crate::marking::Label;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// The group-context extension type that carries the policy hash
/// (private use range of RFC 9420 §17.3).
pub const POLICY_EXTENSION: u16 = 0xF1A5;
/// Length of the policy hash and of the salt.
pub const POLICY_HASH_BYTES: usize = 32;
/// Largest policy record read at all (a label is at most 1 KiB).
pub const MAX_POLICY_BYTES: usize = 1200;

const DOMAIN: &[u8] = b"valise policy record v1";

/// Why bytes are not a policy record. Never quotes them: a ceiling is
/// content (I1).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    #[error("policy record is not in its one canonical CBOR encoding: {0}")]
    Encoding(&'static str),
}

/// A conversation's policy: its ceiling and the salt of its hash.
#[derive(Clone, PartialEq, Eq)]
pub struct PolicyRecord {
    ceiling: Label,
    salt: [u8; POLICY_HASH_BYTES],
}

/// The salt hides nothing by itself but keeps the hash from naming the
/// ceiling: shown only as present.
impl std::fmt::Debug for PolicyRecord {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PolicyRecord")
            .field("ceiling", &self.ceiling)
            .finish_non_exhaustive()
    }
}

#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Wire {
    c: Label,
    #[serde(with = "salt")]
    s: [u8; POLICY_HASH_BYTES],
}

impl PolicyRecord {
    /// A record for `ceiling` with a fresh `salt` (32 random bytes).
    pub fn new(ceiling: Label, salt: [u8; POLICY_HASH_BYTES]) -> Self {
        Self { ceiling, salt }
    }

    pub fn ceiling(&self) -> &Label {
        &self.ceiling
    }

    /// The canonical encoding.
    pub fn encode(&self) -> Result<Vec<u8>, PolicyError> {
        let mut out = Vec::new();
        ciborium::into_writer(
            &Wire {
                c: self.ceiling.clone(),
                s: self.salt,
            },
            &mut out,
        )
        .map_err(|_| PolicyError::Encoding("cannot encode"))?;
        Ok(out)
    }

    /// Decodes a record, refusing every encoding but the canonical one (the
    /// hash is over the bytes: two encodings of one record must not exist).
    pub fn decode(bytes: &[u8]) -> Result<Self, PolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(PolicyError::Encoding("too large"));
        }
        let w: Wire = ciborium::from_reader(bytes)
            .map_err(|_| PolicyError::Encoding("not a policy record"))?;
        let record = Self::new(w.c, w.s);
        if record.encode()? != bytes {
            return Err(PolicyError::Encoding("not the canonical encoding"));
        }
        Ok(record)
    }

    /// The salted hash the group context carries.
    pub fn hash(&self) -> Result<[u8; POLICY_HASH_BYTES], PolicyError> {
        Ok(hash(&self.encode()?))
    }
}

/// Inside the conversation's settings the record travels as a byte string
/// holding its canonical encoding, so the bytes hashed are the bytes sent.
impl Serialize for PolicyRecord {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let bytes = self.encode().map_err(serde::ser::Error::custom)?;
        s.serialize_bytes(&bytes)
    }
}

impl<'de> Deserialize<'de> for PolicyRecord {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = PolicyRecord;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a policy record as a byte string")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<PolicyRecord, E> {
                PolicyRecord::decode(v).map_err(E::custom)
            }
        }
        d.deserialize_bytes(V)
    }
}

/// The hash of an encoded record.
pub fn hash(record: &[u8]) -> [u8; POLICY_HASH_BYTES] {
    Sha256::new()
        .chain_update(DOMAIN)
        .chain_update(record)
        .finalize()
        .into()
}

/// The salt as a CBOR byte string of exactly 32 bytes.
mod salt {
    use super::POLICY_HASH_BYTES;
    use serde::{Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8; POLICY_HASH_BYTES], s: S) -> Result<S::Ok, S::Error> {
        s.serialize_bytes(v)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<[u8; POLICY_HASH_BYTES], D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = [u8; POLICY_HASH_BYTES];
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a byte string of 32 bytes")
            }
            fn visit_bytes<E: serde::de::Error>(self, v: &[u8]) -> Result<Self::Value, E> {
                v.try_into()
                    .map_err(|_| E::invalid_length(v.len(), &"32 bytes"))
            }
        }
        d.deserialize_bytes(V)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::marking::Marking;
    use proptest::prelude::*;

    fn record(text: &str, salt: u8) -> PolicyRecord {
        PolicyRecord::new(Label::parse(text).unwrap(), [salt; 32])
    }

    #[test]
    fn round_trips_and_hashes_with_its_salt() {
        let r = record("EU RESTRICTED//REL TO CZE, FRA", 7);
        let bytes = r.encode().unwrap();
        assert_eq!(PolicyRecord::decode(&bytes).unwrap(), r);
        assert_eq!(r.hash().unwrap(), hash(&bytes));
        // One ceiling, two salts: two hashes nobody can tell apart.
        assert_ne!(
            r.hash().unwrap(),
            record("EU RESTRICTED//REL TO CZE, FRA", 8).hash().unwrap()
        );
        // The ceiling is never in the hash's clear, nor in Debug's salt.
        let debug = format!("{r:?}");
        assert!(!debug.contains("CZE") && !debug.contains("7, 7"), "{debug}");
    }

    #[test]
    fn refuses_other_encodings() {
        let bytes = record("TLP:AMBER", 1).encode().unwrap();
        assert!(PolicyRecord::decode(&bytes[..bytes.len() - 1]).is_err());
        let mut longer = bytes.clone();
        longer.push(0);
        assert!(PolicyRecord::decode(&longer).is_err());
        // A salt of another length, and an unknown field (a restriction
        // not understood is not ignored).
        let encode = |fields: Vec<(&str, ciborium::Value)>| {
            let label = ciborium::Value::serialized(&Label::from(Marking::TlpAmber)).unwrap();
            let mut map = vec![(ciborium::Value::Text("c".into()), label)];
            map.extend(
                fields
                    .into_iter()
                    .map(|(k, v)| (ciborium::Value::Text(k.into()), v)),
            );
            let mut out = Vec::new();
            ciborium::into_writer(&ciborium::Value::Map(map), &mut out).unwrap();
            out
        };
        let good = encode(vec![("s", ciborium::Value::Bytes(vec![1; 32]))]);
        assert!(PolicyRecord::decode(&good).is_ok());
        let short = encode(vec![("s", ciborium::Value::Bytes(vec![1; 31]))]);
        assert!(PolicyRecord::decode(&short).is_err());
        let extra = encode(vec![
            ("s", ciborium::Value::Bytes(vec![1; 32])),
            ("x", ciborium::Value::Integer(1.into())),
        ]);
        assert!(PolicyRecord::decode(&extra).is_err());
        assert!(PolicyRecord::decode(&vec![0xa0; MAX_POLICY_BYTES + 1]).is_err());
    }

    proptest! {
        #[test]
        fn decode_never_panics(b in proptest::collection::vec(any::<u8>(), 0..1500)) {
            if let Ok(r) = PolicyRecord::decode(&b) {
                prop_assert_eq!(r.encode().unwrap(), b);
            }
        }

        #[test]
        fn any_ceiling_round_trips(m in 0usize..crate::marking::CATALOGUE.len(), salt in any::<[u8; 32]>()) {
            let r = PolicyRecord::new(Label::from(crate::marking::CATALOGUE[m].marking), salt);
            let bytes = r.encode().unwrap();
            prop_assert_eq!(PolicyRecord::decode(&bytes).unwrap(), r.clone());
            prop_assert_eq!(r.hash().unwrap(), hash(&bytes));
        }
    }
}
