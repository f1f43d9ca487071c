//! The openmls provider: libcrux crypto (post-quantum suites) and openmls'
//! SQLite storage on the home's own (sealed) connection.

use crate::error::{ClientError, Result};
use openmls_libcrux_crypto::CryptoProvider;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// openmls values (and the keys it finds them by) are stored as
/// MessagePack with field names and byte strings as blobs, behind a
/// one-byte format mark.
///
/// openmls rewrites a group's message secrets, past epochs' member lists
/// with their post-quantum keys included, on every message it seals or
/// opens, and its byte strings are serde sequences: CBOR, used before,
/// spent a third of a receiving device's time encoding them one header per
/// byte. MessagePack is self-describing (openmls needs `deserialize_any`),
/// reads a blob back as a sequence, and on such a store writes 13× and
/// reads 20× faster (docs/BENCHMARKS.md).
#[derive(Default)]
pub struct StorageCodec;

/// Leads every value: the format it is in. Another first byte is another
/// format, refused (never guessed).
const MSGPACK: u8 = 0xff;

impl Codec for StorageCodec {
    type Error = CodecError;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = vec![MSGPACK];
        let mut encoder = rmp_serde::Serializer::new(&mut out)
            .with_struct_map()
            .with_bytes(rmp_serde::config::BytesMode::ForceIterables);
        value
            .serialize(&mut encoder)
            .map_err(|e| CodecError(e.to_string()))?;
        Ok(out)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, CodecError> {
        match slice.split_first() {
            Some((&MSGPACK, rest)) => {
                rmp_serde::from_slice(rest).map_err(|e| CodecError(e.to_string()))
            }
            _ => Err(CodecError("a value in an unknown format".into())),
        }
    }
}

#[derive(Debug, thiserror::Error)]
#[error("storage codec: {0}")]
pub struct CodecError(String);

pub type Storage<'a> = SqliteStorageProvider<StorageCodec, &'a Connection>;

/// Borrowed for the length of one synchronous MLS operation: the connection
/// is not `Sync`, so it is never held across an `.await`.
pub struct Provider<'a> {
    crypto: &'a CryptoProvider,
    storage: Storage<'a>,
}

impl<'a> Provider<'a> {
    pub fn new(crypto: &'a CryptoProvider, conn: &'a Connection) -> Self {
        Self {
            crypto,
            storage: SqliteStorageProvider::new(conn),
        }
    }
}

impl<'a> OpenMlsProvider for Provider<'a> {
    type CryptoProvider = CryptoProvider;
    type RandProvider = CryptoProvider;
    type StorageProvider = Storage<'a>;

    fn storage(&self) -> &Self::StorageProvider {
        &self.storage
    }

    fn crypto(&self) -> &Self::CryptoProvider {
        self.crypto
    }

    fn rand(&self) -> &Self::RandProvider {
        self.crypto
    }
}

pub(crate) fn run_openmls_migrations(conn: &mut Connection) -> Result<()> {
    SqliteStorageProvider::<StorageCodec, &mut Connection>::new(conn)
        .run_migrations()
        .map_err(|e| ClientError::Home(format!("openmls storage migrations: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, PartialEq, serde::Serialize, serde::Deserialize)]
    struct Sample {
        epoch: u64,
        key: Vec<u8>,
        label: Option<String>,
    }

    fn sample() -> Sample {
        Sample {
            epoch: 7,
            key: (0..=255).collect(),
            label: Some("leaf".into()),
        }
    }

    #[test]
    fn values_round_trip_behind_the_mark() {
        let bytes = StorageCodec::to_vec(&sample()).unwrap();
        assert_eq!(bytes[0], MSGPACK);
        // Bytes as one blob, not a list of numbers (bytes past 127 would
        // cost two each).
        assert!(bytes.len() < 256 + 32, "{} bytes", bytes.len());
        assert_eq!(
            StorageCodec::from_slice::<Sample>(&bytes).unwrap(),
            sample()
        );
    }

    #[test]
    fn values_in_another_format_are_refused() {
        let json = serde_json::to_vec(&sample()).unwrap();
        assert!(StorageCodec::from_slice::<Sample>(&json).is_err());
    }

    #[test]
    fn damaged_values_are_errors() {
        let bytes = StorageCodec::to_vec(&sample()).unwrap();
        assert!(StorageCodec::from_slice::<Sample>(&bytes[..bytes.len() / 2]).is_err());
        assert!(StorageCodec::from_slice::<Sample>(&[MSGPACK]).is_err());
        assert!(StorageCodec::from_slice::<Sample>(&[]).is_err());
    }
}
