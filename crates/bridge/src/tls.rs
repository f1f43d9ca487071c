//! The bridge's TLS: a self-signed P-256 certificate for 127.0.0.1, ::1
//! and localhost, made once at `init`. The certificate is public
//! (`<home>/bridge/cert.pem`, to import into the mail client); its key is
//! sealed in the home's database.

use crate::error::{BridgeError, Result};
use rcgen::{CertificateParams, DnType, KeyPair, PKCS_ECDSA_P256_SHA256};
use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject as _;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use zeroize::Zeroizing;

/// Where the certificate lives in a home.
pub fn cert_path(home: &Path) -> PathBuf {
    home.join("bridge").join("cert.pem")
}

/// A new certificate (PEM) and its key (PEM).
pub fn generate() -> Result<(String, Zeroizing<String>)> {
    let err = |e: rcgen::Error| BridgeError::Tls(e.to_string());
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(err)?;
    let mut params = CertificateParams::new(vec![
        "127.0.0.1".to_owned(),
        "::1".to_owned(),
        "localhost".to_owned(),
    ])
    .map_err(err)?;
    params.distinguished_name.push(
        DnType::CommonName,
        "Valise mail bridge (this computer only)",
    );
    let cert = params.self_signed(&key).map_err(err)?;
    Ok((cert.pem(), Zeroizing::new(key.serialize_pem())))
}

/// The rustls configuration from the certificate file and the sealed key.
pub fn server_config(cert_pem: &Path, key_pem: &str) -> Result<Arc<ServerConfig>> {
    let file = |e: &dyn std::fmt::Display| BridgeError::File {
        path: cert_pem.display().to_string(),
        reason: e.to_string(),
    };
    let certs: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert_pem)
        .map_err(|e| file(&e))?
        .collect::<std::result::Result<_, _>>()
        .map_err(|e| file(&e))?;
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|e| BridgeError::Tls(format!("the sealed TLS key: {e}")))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| BridgeError::Tls(e.to_string()))?
            .with_no_client_auth()
            .with_single_cert(certs, key)
            .map_err(|e| BridgeError::Tls(e.to_string()))?;
    Ok(Arc::new(config))
}
