//! Identities: users (`local@domain`), their devices, conversations, letters.
//!
//! Each is parsed once at the edge; a value of these types is always valid.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// Why a string is not a valid identifier.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error(
        "invalid user id {0:?}: expected local@domain (lowercase letters, digits, '.', '-', '_')"
    )]
    User(String),
    #[error("invalid {kind} {value:?}: expected {len} hex digits")]
    Hex {
        kind: &'static str,
        value: String,
        len: usize,
    },
    #[error("invalid device address {0:?}: expected user/device")]
    Address(String),
}

/// A user: `local@domain`, lowercase. The domain names the user's server.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct UserId {
    value: String,
    at: usize,
}

impl UserId {
    /// Parses `local@domain`; ASCII only, lowercased on input.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let value = s.trim().to_ascii_lowercase();
        let bad = || IdError::User(s.to_owned());
        let at = value.find('@').ok_or_else(bad)?;
        let (local, domain) = (&value[..at], &value[at + 1..]);
        let local_ok = !local.is_empty()
            && local.len() <= 64
            && local
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        let domain_ok = !domain.is_empty()
            && domain.len() <= 253
            && domain.split('.').all(|label| {
                !label.is_empty()
                    && label.len() <= 63
                    && !label.starts_with('-')
                    && !label.ends_with('-')
                    && label
                        .bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b == b'-')
            });
        if local_ok && domain_ok {
            Ok(Self { value, at })
        } else {
            Err(bad())
        }
    }

    /// The part before `@`.
    pub fn local(&self) -> &str {
        &self.value[..self.at]
    }

    /// The domain, which names the user's server.
    pub fn domain(&self) -> &str {
        &self.value[self.at + 1..]
    }

    /// The whole `local@domain`.
    pub fn as_str(&self) -> &str {
        &self.value
    }
}

impl TryFrom<String> for UserId {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<UserId> for String {
    fn from(u: UserId) -> String {
        u.value
    }
}

impl FromStr for UserId {
    type Err = IdError;
    fn from_str(s: &str) -> Result<Self, IdError> {
        Self::parse(s)
    }
}

impl fmt::Display for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.value)
    }
}

impl fmt::Debug for UserId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "UserId({})", self.value)
    }
}

/// Declares a fixed-size random identifier written as lowercase hex.
macro_rules! hex_id {
    ($(#[$doc:meta])* $name:ident, $len:expr, $kind:literal) => {
        $(#[$doc])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name([u8; $len]);

        impl $name {
            /// Length in bytes.
            pub const LEN: usize = $len;

            /// Wraps raw bytes (the caller draws them at random).
            pub const fn from_bytes(bytes: [u8; $len]) -> Self {
                Self(bytes)
            }

            /// The raw bytes.
            pub fn as_bytes(&self) -> &[u8; $len] {
                &self.0
            }

            /// Parses exactly `2 * LEN` lowercase or uppercase hex digits.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                let bad = || IdError::Hex { kind: $kind, value: s.to_owned(), len: 2 * $len };
                let s = s.trim();
                // from_str_radix alone would take a leading '+'.
                if s.len() != 2 * $len || !s.bytes().all(|b| b.is_ascii_hexdigit()) {
                    return Err(bad());
                }
                let mut out = [0u8; $len];
                for (i, byte) in out.iter_mut().enumerate() {
                    *byte = u8::from_str_radix(&s[2 * i..2 * i + 2], 16).map_err(|_| bad())?;
                }
                Ok(Self(out))
            }

            /// Parses raw bytes of exactly `LEN`.
            pub fn from_slice(b: &[u8]) -> Result<Self, IdError> {
                <[u8; $len]>::try_from(b).map(Self).map_err(|_| IdError::Hex {
                    kind: $kind,
                    value: format!("{} bytes", b.len()),
                    len: 2 * $len,
                })
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.to_string()
            }
        }

        impl FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                self.0.iter().try_for_each(|b| write!(f, "{b:02x}"))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
    };
}

hex_id!(
    /// One device of a user; each device is its own MLS leaf with its own keys.
    DeviceId, 8, "device id"
);
hex_id!(
    /// A conversation; the same bytes are its MLS group id.
    ConversationId, 16, "conversation id"
);
hex_id!(
    /// A letter, chosen by its sender's client: makes retries idempotent and
    /// lets replies name what they answer.
    MessageId, 16, "message id"
);
hex_id!(
    /// A thread of letters inside a conversation.
    ThreadId, 16, "thread id"
);

hex_id!(
    /// An attachment blob on its uploader's server: a 128-bit random
    /// capability (whoever names it may read its ciphertext, nobody else
    /// can guess it).
    BlobId, 16, "blob id"
);

/// One device of one user, `user/device`: the identity inside every MLS
/// credential of Valise, so that a leaf names both.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DeviceAddress {
    pub user: UserId,
    pub device: DeviceId,
}

impl DeviceAddress {
    pub fn new(user: UserId, device: DeviceId) -> Self {
        Self { user, device }
    }

    /// Parses `user/device`.
    pub fn parse(s: &str) -> Result<Self, IdError> {
        let (u, d) = s
            .split_once('/')
            .ok_or_else(|| IdError::Address(s.to_owned()))?;
        Ok(Self {
            user: UserId::parse(u)?,
            device: DeviceId::parse(d)?,
        })
    }

    /// Parses the identity bytes of an MLS basic credential.
    pub fn from_credential_identity(identity: &[u8]) -> Result<Self, IdError> {
        let s = std::str::from_utf8(identity)
            .map_err(|_| IdError::Address(String::from_utf8_lossy(identity).into_owned()))?;
        Self::parse(s)
    }

    /// The identity bytes to put in an MLS basic credential.
    pub fn credential_identity(&self) -> Vec<u8> {
        self.to_string().into_bytes()
    }
}

impl TryFrom<String> for DeviceAddress {
    type Error = IdError;
    fn try_from(s: String) -> Result<Self, IdError> {
        Self::parse(&s)
    }
}

impl From<DeviceAddress> for String {
    fn from(a: DeviceAddress) -> String {
        a.to_string()
    }
}

impl fmt::Display for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.user, self.device)
    }
}

impl fmt::Debug for DeviceAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "DeviceAddress({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn user_ids() {
        let u = UserId::parse("Alice@MFA.example").unwrap();
        assert_eq!(u.as_str(), "alice@mfa.example");
        assert_eq!(u.local(), "alice");
        assert_eq!(u.domain(), "mfa.example");
        for bad in [
            "",
            "alice",
            "@mfa.example",
            "alice@",
            "a b@x.y",
            "a@-x.y",
            "a@x..y",
            "a@b@c",
        ] {
            assert!(UserId::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn hex_ids_and_addresses() {
        let d = DeviceId::parse("0011223344556677").unwrap();
        assert_eq!(d.to_string(), "0011223344556677");
        assert!(DeviceId::parse("001122334455667").is_err());
        assert!(DeviceId::parse("00112233445566zz").is_err());
        assert!(DeviceId::parse("é01122334455667").is_err());
        let a = DeviceAddress::parse("bob@mfa.example/0011223344556677").unwrap();
        assert_eq!(
            DeviceAddress::from_credential_identity(&a.credential_identity()).unwrap(),
            a
        );
        assert!(DeviceAddress::from_credential_identity(b"\xff\xfe").is_err());
    }

    proptest! {
        #[test]
        fn parsers_never_panic(s in ".{0,80}") {
            let _ = UserId::parse(&s);
            let _ = DeviceId::parse(&s);
            let _ = ConversationId::parse(&s);
            let _ = DeviceAddress::parse(&s);
        }

        #[test]
        fn hex_round_trip(b in proptest::array::uniform16(any::<u8>())) {
            let c = ConversationId::from_bytes(b);
            prop_assert_eq!(ConversationId::parse(&c.to_string()).unwrap(), c);
        }
    }
}
