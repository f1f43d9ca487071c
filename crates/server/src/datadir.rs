//! The data directory: database, keys, TLS material, configuration.
//!
//! ```text
//! D/config.json               {domain, created_at_ms}, written last: it marks D as initialised
//! D/valised.db                SQLite (WAL); also the key directory's tables (`directory_*`),
//!                             which hold no secret
//! D/keys/server.key           Ed25519 PKCS#8 PEM: the server's identity for audit checkpoints
//!                             and federation (issues to come)
//! D/keys/directory-root.key   the seed of the Ed25519 key that signs the key directory's
//!                             roots: 64 hex digits and a newline, mode 0600
//! D/keys/directory-vrf.key    the key directory's VRF secret, the same way
//! D/keys/audit.key            the seed of the Ed25519 key that signs the audit log's
//!                             checkpoints, the same way (made on the first run of a data
//!                             directory older than the audit log)
//! D/tls/ca.pem ca.key cert.pem key.pem
//! ```
//!
//! The directory and audit keys are files, not rows, so that a copy of the
//! database (or a backup of it) cannot sign roots or checkpoints. A data directory initialised
//! before they left the database has them in its `directory_secrets` table:
//! the first `valised run` or `admin` moves them to the files, then deletes
//! them from the database with their pages overwritten.

use crate::directory_keys::{DirectoryKeys, SECRET_LEN};
use crate::store::{SqliteStore, StoreError};
use rusqlite::OptionalExtension as _;
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use valise_directory::{ROOT_SECRET_NAME, VRF_SECRET_NAME};
use valise_proto::tlog::CheckpointSigner;
use zeroize::Zeroizing;

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
    #[error(transparent)]
    Random(#[from] crate::invite::RandomError),
    #[error("{0}: not a key file (expected {SECRET_LEN} bytes in hex)")]
    BadKeyFile(String),
    #[error("the key directory's keys are missing: neither {0} nor the database holds them")]
    NoDirectoryKeys(String),
}

/// The public keys of a freshly initialised data directory.
#[derive(Debug, Clone)]
pub struct InitKeys {
    /// The server signing key (Ed25519, hex).
    pub server_key: String,
    /// The key that signs the key directory's roots (Ed25519, hex): clients
    /// pin it.
    pub directory_key: String,
    /// The key that signs the audit log's checkpoints (Ed25519, hex):
    /// auditors pin it.
    pub audit_key: String,
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

/// Writes a new file (never over an existing one) and syncs it.
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

    pub fn directory_root_key_path(&self) -> PathBuf {
        self.root.join("keys").join("directory-root.key")
    }

    pub fn directory_vrf_key_path(&self) -> PathBuf {
        self.root.join("keys").join("directory-vrf.key")
    }

    pub fn audit_key_path(&self) -> PathBuf {
        self.root.join("keys").join("audit.key")
    }

    pub fn ca_path(&self) -> PathBuf {
        self.root.join("tls").join("ca.pem")
    }

    /// Attachment blobs, one file each (`crate::blobs`).
    pub fn blobs_path(&self) -> PathBuf {
        self.root.join("blobs")
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
        let keys = DirectoryKeys::generate()?;
        self.write_directory_keys(&keys)?;
        let audit = self.audit_signer(domain)?;
        drop(self.open_store()?);
        let directory_key = crate::directory::initialise(&self.db_path(), &keys)?;
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
            audit_key: audit.public_key().hex(),
        })
    }

    /// The audit log's checkpoint signer for `domain`'s log, from its key
    /// file; made there first if missing (a data directory initialised
    /// before the audit log).
    pub fn audit_signer(&self, domain: &str) -> Result<CheckpointSigner, DataDirError> {
        let path = self.audit_key_path();
        if !path.exists() {
            let mut seed = Zeroizing::new([0u8; SECRET_LEN]);
            crate::invite::fill_random(seed.as_mut())?;
            write_key(&path, &seed)?;
            tracing::info!(path = %path.display(), "audit key created");
        }
        CheckpointSigner::from_seed(&crate::audit::origin(domain), &*read_key(&path)?)
            .map_err(|e| DataDirError::BadKeyFile(format!("{}: {e}", path.display())))
    }

    /// The key directory's keys, from their files. Keys an older version
    /// kept in the database are moved to the files first, and erased from
    /// the database (also after a crash between the two).
    pub fn directory_keys(&self) -> Result<DirectoryKeys, DataDirError> {
        let (root_path, vrf_path) = (
            self.directory_root_key_path(),
            self.directory_vrf_key_path(),
        );
        let stored = stored_secrets(&self.db_path())?;
        if !root_path.exists() || !vrf_path.exists() {
            let (root, vrf) = stored.clone().ok_or_else(|| {
                DataDirError::NoDirectoryKeys(self.root.join("keys").display().to_string())
            })?;
            for (path, secret) in [(&root_path, &root), (&vrf_path, &vrf)] {
                if !path.exists() {
                    write_key(path, secret)?;
                }
            }
            tracing::info!("directory keys moved out of the database");
        }
        let keys = DirectoryKeys::from_secrets(read_key(&root_path)?, read_key(&vrf_path)?);
        if stored.is_some() {
            erase_stored_secrets(&self.db_path())?;
        }
        Ok(keys)
    }

    fn write_directory_keys(&self, keys: &DirectoryKeys) -> Result<(), DataDirError> {
        write_key(&self.directory_root_key_path(), keys.root_secret())?;
        write_key(&self.directory_vrf_key_path(), keys.vrf_secret())
    }
}

type Secret = Zeroizing<[u8; SECRET_LEN]>;

fn write_key(path: &Path, secret: &[u8; SECRET_LEN]) -> Result<(), DataDirError> {
    let mut text = Zeroizing::new(hex::encode(secret));
    text.push('\n');
    write_file(path, text.as_bytes(), 0o600)
}

fn read_key(path: &Path) -> Result<Secret, DataDirError> {
    let text = Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io_err(path, e))?);
    let mut secret = Zeroizing::new([0u8; SECRET_LEN]);
    hex::decode_to_slice(text.trim(), secret.as_mut())
        .map_err(|_| DataDirError::BadKeyFile(path.display().to_string()))?;
    Ok(secret)
}

/// The secrets a data directory initialised before the key files kept in
/// the key directory's `directory_secrets` table, if it still has both.
fn stored_secrets(db: &Path) -> Result<Option<(Secret, Secret)>, DataDirError> {
    let conn = rusqlite::Connection::open(db).map_err(|e| io_err(db, e))?;
    let has_table = conn
        .query_row(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'directory_secrets'",
            [],
            |_| Ok(()),
        )
        .optional()
        .map_err(|e| io_err(db, e))?
        .is_some();
    if !has_table {
        return Ok(None);
    }
    let secret = |name: &str| -> Result<Option<Secret>, DataDirError> {
        let value: Option<Zeroizing<Vec<u8>>> = conn
            .query_row(
                "SELECT value FROM directory_secrets WHERE name = ?1",
                [name],
                |r| r.get::<_, Vec<u8>>(0).map(Zeroizing::new),
            )
            .optional()
            .map_err(|e| io_err(db, e))?;
        value
            .map(|v| {
                let mut out = Zeroizing::new([0u8; SECRET_LEN]);
                if v.len() != SECRET_LEN {
                    return Err(DataDirError::BadKeyFile(format!(
                        "{} ({name})",
                        db.display()
                    )));
                }
                out.copy_from_slice(&v);
                Ok(out)
            })
            .transpose()
    };
    Ok(secret(ROOT_SECRET_NAME)?.zip(secret(VRF_SECRET_NAME)?))
}

/// Deletes the directory secrets from the database with `secure_delete`
/// (their pages are overwritten with zeros) and checkpoints the WAL into
/// the main file, truncating it, so that no copy of them is left on disk.
fn erase_stored_secrets(db: &Path) -> Result<(), DataDirError> {
    let conn = rusqlite::Connection::open(db).map_err(|e| io_err(db, e))?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .and_then(|()| conn.pragma_update(None, "secure_delete", "ON"))
        .and_then(|()| {
            conn.execute(
                "DELETE FROM directory_secrets WHERE name IN (?1, ?2)",
                [ROOT_SECRET_NAME, VRF_SECRET_NAME],
            )
        })
        .and_then(|_| conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(())))
        .map_err(|e| io_err(db, e))
}
