//! The openmls provider: libcrux crypto (post-quantum suites) and openmls'
//! SQLite storage on the home's own (sealed) connection.

use crate::error::{ClientError, Result};
use openmls_libcrux_crypto::CryptoProvider;
use openmls_sqlite_storage::{Codec, SqliteStorageProvider};
use openmls_traits::OpenMlsProvider;
use rusqlite::Connection;

/// openmls values are stored as compact CBOR rather than JSON number lists.
#[derive(Default)]
pub struct CborCodec;

impl Codec for CborCodec {
    type Error = CodecError;

    fn to_vec<T: serde::Serialize>(value: &T) -> Result<Vec<u8>, CodecError> {
        let mut out = Vec::new();
        ciborium::into_writer(value, &mut out).map_err(|e| CodecError(e.to_string()))?;
        Ok(out)
    }

    fn from_slice<T: serde::de::DeserializeOwned>(slice: &[u8]) -> Result<T, CodecError> {
        ciborium::from_reader(slice).map_err(|e| CodecError(e.to_string()))
    }
}

#[derive(Debug, thiserror::Error)]
#[error("storage codec: {0}")]
pub struct CodecError(String);

pub type Storage<'a> = SqliteStorageProvider<CborCodec, &'a Connection>;

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
    SqliteStorageProvider::<CborCodec, &mut Connection>::new(conn)
        .run_migrations()
        .map_err(|e| ClientError::Home(format!("openmls storage migrations: {e}")))
}
