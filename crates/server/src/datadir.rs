//! The data directory: database, keys, TLS material, configuration.
//!
//! ```text
//! D/config.json       {domain, created_at_ms}, written last: it marks D as initialised
//! D/valised.db        SQLite (WAL); also the key directory (tables `directory_*`,
//!                     with its VRF key and root signing key)
//! D/keys/server.key   Ed25519 PKCS#8 PEM: the server's identity for audit checkpoints and
//!                      federation (issues to come); directory roots are signed
//!                      by the directory key kept in valised.db
//! D/tls/ca.pem ca.key cert.pem key.pem
//! ```

use crate::store::{SqliteStore, StoreError};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

#[derive(Debug, thiserror::Error)]
pub enum DataDirError {
    #[error("{0} is already initialised")]
    AlreadyInitialised(String),
    #[error("{0} is not initialised (run `valised init --data {0} --domain ...`)")]
    NotInitialised(String),
    #[error("invalid domain {0:?}")]
    InvalidDomain(String),
    #[error("{path}: {reason}")]
    Io { path: String, reason: String },
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    #[error("key generation failed: {0}")]
    Key(#[from] rcgen::Error),
    #[error("database: {0}")]
    Store(#[from] StoreError),
    #[error("key directory: {0}")]
    Directory(#[from] valise_directory::DirectoryError),
}

/// The public keys of a freshly initialised data directory.
#[derive(Debug, Clone)]
pub struct InitKeys {
    /// The server signing key (Ed25519, hex).
    pub server_key: String,
    /// The key that signs the key directory's roots (Ed25519, hex): clients
    /// pin it.
    pub directory_key: String,
}

/// What `config.json` holds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Config {
    pub domain: String,
    pub created_at_ms: i64,
}

/// Paths inside a data directory.
#[derive(Debug, Clone)]
pub struct DataDir {
    root: PathBuf,
}

fn io_err(path: &Path, e: impl std::fmt::Display) -> DataDirError {
    DataDirError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

fn write_file(path: &Path, contents: &[u8], mode: u32) -> Result<(), DataDirError> {
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .map_err(|e| io_err(path, e))?;
    f.write_all(contents).map_err(|e| io_err(path, e))?;
    f.sync_all().map_err(|e| io_err(path, e))
}

impl DataDir {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Self { root: root.into() }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    pub fn config_path(&self) -> PathBuf {
        self.root.join("config.json")
    }

    pub fn db_path(&self) -> PathBuf {
        self.root.join("valised.db")
    }

    pub fn server_key_path(&self) -> PathBuf {
        self.root.join("keys").join("server.key")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }

    pub fn cert_path(&self) -> PathBuf {
        self.root.join("tls").join("cert.pem")
    }

    pub fn key_path(&self) -> PathBuf {
        self.root.join("tls").join("key.pem")
    }

    pub fn is_initialised(&self) -> bool {
        self.config_path().exists()
    }

    /// Reads `config.json`.
    pub fn config(&self) -> Result<Config, DataDirError> {
        let path = self.config_path();
        if !path.exists() {
            return Err(DataDirError::NotInitialised(
                self.root.display().to_string(),
            ));
        }
        let text = std::fs::read(&path).map_err(|e| io_err(&path, e))?;
        serde_json::from_slice(&text).map_err(|e| io_err(&path, e))
    }

    /// Opens the database (applying migrations).
    pub fn open_store(&self) -> Result<SqliteStore, DataDirError> {
        Ok(SqliteStore::open(&self.db_path())?)
    }

    /// Creates everything, the key directory at epoch 0 included; refuses an
    /// initialised directory. Returns the public keys.
    pub fn init(&self, domain: &str, now_ms: i64) -> Result<InitKeys, DataDirError> {
        if self.is_initialised() || self.db_path().exists() {
            return Err(DataDirError::AlreadyInitialised(
                self.root.display().to_string(),
            ));
        }
        // A domain is what a user id has after '@'.
        let probe = format!("x@{domain}");
        match valise_proto::UserId::parse(&probe) {
            Ok(u) if u.domain() == domain => {}
            _ => return Err(DataDirError::InvalidDomain(domain.to_owned())),
        }
        for dir in [
            self.root.clone(),
            self.root.join("keys"),
            self.root.join("tls"),
        ] {
            std::fs::create_dir_all(&dir).map_err(|e| io_err(&dir, e))?;
        }
        let signing = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519)?;
        write_file(
            &self.server_key_path(),
            signing.serialize_pem().as_bytes(),
            0o600,
        )?;
        let tls = crate::tls::generate(domain)?;
        write_file(&self.ca_path(), tls.ca_pem.as_bytes(), 0o644)?;
        write_file(
            &self.root.join("tls").join("ca.key"),
            tls.ca_key_pem.as_bytes(),
            0o600,
        )?;
        write_file(&self.cert_path(), tls.cert_pem.as_bytes(), 0o644)?;
        write_file(&self.key_path(), tls.key_pem.as_bytes(), 0o600)?;
        drop(self.open_store()?);
        let directory_key = crate::directory::initialise(&self.db_path())?;
        let config = Config {
            domain: domain.to_owned(),
            created_at_ms: now_ms,
        };
        let json =
            serde_json::to_vec_pretty(&config).map_err(|e| io_err(&self.config_path(), e))?;
        write_file(&self.config_path(), &json, 0o644)?;
        Ok(InitKeys {
            server_key: hex::encode(signing.public_key_raw()),
            directory_key: directory_key.to_string(),
        })
    }
}
