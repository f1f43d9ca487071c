//! The HTTPS connection to the device's server: TLS 1.3 only, pinned to the
//! server's CA, JSON bodies, problem details turned into typed errors.

use crate::error::{ClientError, Result};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};
use valise_proto::Problem;
use zeroize::Zeroizing;

/// One server, one device's session on it.
pub struct Api {
    http: reqwest::Client,
    base: String,
    /// Bearer token and when to stop using it (a little before it expires).
    token: Option<(Zeroizing<String>, Instant)>,
}

impl Api {
    /// `base` is `https://host:port`; `ca_pem` the only trusted root.
    pub fn new(base: &str, ca_pem: &str) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !base.starts_with("https://") {
            return Err(ClientError::Invalid(format!(
                "server address must start with https:// (got {base})"
            )));
        }
        let mut roots = rustls::RootCertStore::empty();
        let mut reader = std::io::BufReader::new(ca_pem.as_bytes());
        let mut added = 0;
        for cert in rustls_pki_types::pem::PemObject::pem_reader_iter(&mut reader) {
            let cert: rustls_pki_types::CertificateDer<'static> =
                cert.map_err(|e| ClientError::Invalid(format!("CA file: {e}")))?;
            roots
                .add(cert)
                .map_err(|e| ClientError::Invalid(format!("CA file: {e}")))?;
            added += 1;
        }
        if added == 0 {
            return Err(ClientError::Invalid("CA file holds no certificate".into()));
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut tls = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(|e| ClientError::Invalid(format!("TLS: {e}")))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        let http = reqwest::Client::builder()
            .use_preconfigured_tls(tls)
            .connect_timeout(Duration::from_secs(10))
            .timeout(Duration::from_secs(120))
            .build()
            .map_err(|e| ClientError::Network(e.to_string()))?;
        Ok(Self {
            http,
            base,
            token: None,
        })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    /// The current token if it is still fresh.
    pub(crate) fn fresh_token(&self) -> bool {
        matches!(&self.token, Some((_, until)) if Instant::now() < *until)
    }

    pub(crate) fn set_token(&mut self, token: String, expires_in_s: u64) {
        let margin = expires_in_s.saturating_sub(60).max(expires_in_s / 2);
        self.token = Some((
            Zeroizing::new(token),
            Instant::now() + Duration::from_secs(margin),
        ));
    }

    pub(crate) fn forget_token(&mut self) {
        self.token = None;
    }

    /// Sends one request; with `auth`, the bearer token must be set.
    pub(crate) async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: bool,
    ) -> Result<R> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        if auth {
            let (token, _) = self.token.as_ref().ok_or_else(|| {
                ClientError::Protocol("authenticated call without a session".into())
            })?;
            req = req.bearer_auth(token.as_str());
        }
        if let Some(b) = body {
            req = req.json(b);
        }
        let resp = req.send().await.map_err(network)?;
        let status = resp.status();
        let bytes = resp.bytes().await.map_err(network)?;
        if status.is_success() {
            serde_json::from_slice(&bytes)
                .map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
        } else {
            Err(ClientError::Server(problem(status, &bytes)))
        }
    }
}

fn network(e: reqwest::Error) -> ClientError {
    // reqwest's Display omits the cause (certificate errors); walk the chain.
    let mut msg = e.to_string();
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        src = s.source();
    }
    ClientError::Network(msg)
}

fn problem(status: StatusCode, body: &[u8]) -> Problem {
    serde_json::from_slice(body).unwrap_or_else(|_| {
        let code = match status.as_u16() {
            400 => valise_proto::ErrorCode::BadRequest,
            401 => valise_proto::ErrorCode::Unauthorized,
            404 => valise_proto::ErrorCode::NotFound,
            413 => valise_proto::ErrorCode::PayloadTooLarge,
            429 => valise_proto::ErrorCode::RateLimited,
            _ => valise_proto::ErrorCode::Unknown,
        };
        Problem::new(code, format!("HTTP {status} without problem details"))
    })
}
