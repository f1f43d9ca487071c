//! `valised admin info`: what auditors and partner organisations need to
//! trust this server, read from its data directory: its domain, its public
//! keys and the CA that signs its TLS certificate.
//!
//! It reads secret key files to derive their public halves and prints only
//! those: [`ServerInfo`] holds no secret, so neither output can carry one.
//! A new key (the audit log's checkpoint key) is one more [`PublicKey`] in
//! [`ServerInfo::read`].

use crate::datadir::{DataDir, DataDirError};
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject as _;
use serde::Serialize;
use sha2::{Digest as _, Sha256};
use std::fmt::Write as _;
use zeroize::Zeroizing;

/// One public key of the server.
#[derive(Debug, Clone, Serialize)]
pub struct PublicKey {
    /// Stable name, for scripts.
    pub name: &'static str,
    /// What it is for, for people.
    pub purpose: &'static str,
    pub algorithm: &'static str,
    /// The raw public key, in hex.
    pub hex: String,
}

/// The TLS CA clients pin (`--ca`).
#[derive(Debug, Clone, Serialize)]
pub struct CaInfo {
    /// SHA-256 of the certificate's DER, in hex: what to compare out of band.
    pub sha256: String,
    pub pem: String,
}

/// Everything `admin info` prints.
#[derive(Debug, Clone, Serialize)]
pub struct ServerInfo {
    pub domain: String,
    pub keys: Vec<PublicKey>,
    pub ca: CaInfo,
}

fn io_err(path: &std::path::Path, e: impl std::fmt::Display) -> DataDirError {
    DataDirError::Io {
        path: path.display().to_string(),
        reason: e.to_string(),
    }
}

impl ServerInfo {
    /// Reads an initialised data directory (moving older directory keys
    /// out of the database first, as every admin command does).
    pub fn read(dir: &DataDir) -> Result<Self, DataDirError> {
        let domain = dir.config()?.domain;
        let directory = dir.directory_keys()?;
        let keys = vec![
            PublicKey {
                name: "server",
                purpose: "the server's identity (audit checkpoints, federation)",
                algorithm: "Ed25519",
                hex: server_public_key(dir)?,
            },
            PublicKey {
                name: "directory",
                purpose: "signs the key directory's epoch roots; clients and auditors pin it",
                algorithm: "Ed25519",
                hex: directory.public_key().to_string(),
            },
            PublicKey {
                name: "directory_vrf",
                purpose: "the key directory's VRF, which hides user ids; proofs verify under it",
                algorithm: "ECVRF-EDWARDS25519-SHA512-TAI",
                hex: hex::encode(directory.vrf().public_key()?),
            },
        ];
        Ok(Self {
            domain,
            keys,
            ca: ca_info(dir)?,
        })
    }

    /// The text for people: one line per key, then the CA.
    pub fn text(&self) -> String {
        let mut out = format!("domain: {}\n", self.domain);
        for k in &self.keys {
            // Writing to a String cannot fail.
            let _ = writeln!(
                out,
                "{} key ({}, public): {}\n  {}",
                k.name, k.algorithm, k.hex, k.purpose
            );
        }
        let _ = write!(
            out,
            "TLS CA certificate (clients' --ca), SHA-256 {}:\n{}",
            self.ca.sha256, self.ca.pem
        );
        out
    }
}

/// The public half of `keys/server.key` (PKCS#8 PEM), in hex.
fn server_public_key(dir: &DataDir) -> Result<String, DataDirError> {
    let path = dir.server_key_path();
    let pem = Zeroizing::new(std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?);
    let pair = rcgen::KeyPair::from_pem(&pem)?;
    Ok(hex::encode(pair.public_key_raw()))
}

fn ca_info(dir: &DataDir) -> Result<CaInfo, DataDirError> {
    let path = dir.ca_path();
    let pem = std::fs::read_to_string(&path).map_err(|e| io_err(&path, e))?;
    let der = CertificateDer::from_pem_slice(pem.as_bytes()).map_err(|e| io_err(&path, e))?;
    Ok(CaInfo {
        sha256: hex::encode(Sha256::digest(der.as_ref())),
        pem,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every secret file of the data directory, as it lies on disk, and
    /// the hex of what is in each.
    fn secrets(dir: &DataDir) -> Vec<String> {
        let mut found = Vec::new();
        for path in [
            dir.server_key_path(),
            dir.directory_root_key_path(),
            dir.directory_vrf_key_path(),
            dir.key_path(),
            dir.root().join("tls").join("ca.key"),
        ] {
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines().filter(|l| !l.starts_with("-----")) {
                found.push(line.trim().to_owned());
            }
            // The raw secret bytes of a PEM key, in hex, as a leak would
            // print them.
            if let Ok(der) = rustls_pki_types::PrivateKeyDer::from_pem_slice(text.as_bytes()) {
                found.push(hex::encode(der.secret_der()));
            }
        }
        found
    }

    #[test]
    fn prints_the_public_keys_and_the_ca_and_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = DataDir::new(tmp.path().join("data"));
        let init = dir.init("mfa.example", 0).unwrap();
        let info = ServerInfo::read(&dir).unwrap();
        let (text, json) = (info.text(), serde_json::to_string(&info).unwrap());
        assert_eq!(info.domain, "mfa.example");
        assert_eq!(info.keys[0].hex, init.server_key);
        assert_eq!(info.keys[1].hex, init.directory_key);
        assert_eq!(info.keys[2].hex.len(), 64);
        assert!(text.contains(&info.ca.pem) && info.ca.pem.contains("BEGIN CERTIFICATE"));
        let secrets = secrets(&dir);
        assert!(secrets.len() >= 5);
        for secret in secrets.iter().filter(|s| s.len() >= 16) {
            for output in [&text, &json] {
                assert!(!output.contains(secret.as_str()), "a secret in {output}");
            }
        }
        // The fingerprint is that of the CA's DER.
        let der = CertificateDer::from_pem_file(dir.ca_path()).unwrap();
        assert_eq!(info.ca.sha256, hex::encode(Sha256::digest(der.as_ref())));
    }
}
