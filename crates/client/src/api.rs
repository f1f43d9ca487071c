//! The HTTPS connection to the device's server: TLS 1.3 only, pinned to the
//! server's CA, JSON bodies (binary ones for delivery), problem details
//! turned into typed errors, answers read up to a size limit.

use crate::error::{ClientError, Result};
use reqwest::header::{CONTENT_TYPE, HeaderMap};
use reqwest::{Method, StatusCode};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant};
use valise_proto::Problem;
use valise_proto::limits::MAX_RESPONSE_BYTES;
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

    /// Sends one JSON request; with `auth`, the bearer token must be set.
    pub(crate) async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<&B>,
        auth: bool,
    ) -> Result<R> {
        let body = body
            .map(|b| serde_json::to_vec(b).map(|b| Body::new("application/json", b)))
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("{path}: {e}")))?;
        let bytes = self.request(method, path, body, auth).await?;
        serde_json::from_slice(&bytes).map_err(|e| ClientError::Protocol(format!("{path}: {e}")))
    }

    /// Sends one request and returns the answer's bytes (at most
    /// [`MAX_RESPONSE_BYTES`]: a hostile server cannot make the device
    /// hold more).
    pub(crate) async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        auth: bool,
    ) -> Result<Vec<u8>> {
        self.exchange(method, path, body, &[], auth)
            .await
            .map(|(_, bytes)| bytes)
    }

    /// As [`Api::request`], with request headers besides the body's, and
    /// the answer's headers (the blob API speaks in headers).
    pub(crate) async fn exchange(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&'static str, String)],
        auth: bool,
    ) -> Result<(HeaderMap, Vec<u8>)> {
        let answer = self
            .start(method, path, body, headers, auth, MAX_RESPONSE_BYTES)?
            .await?;
        if answer.bytes.len() > MAX_RESPONSE_BYTES {
            return Err(ClientError::Protocol(format!(
                "{path}: the server's answer is larger than {MAX_RESPONSE_BYTES} bytes"
            )));
        }
        answer.success()
    }

    /// Sends one request; the future reads its answer, stopping once more
    /// than `limit` bytes came (what that means is the caller's to say),
    /// and borrows nothing: it may run as a task of its own while the
    /// caller works (a download keeps its next ranges in flight so).
    pub(crate) fn start(
        &self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&'static str, String)],
        auth: bool,
        limit: usize,
    ) -> Result<impl Future<Output = Result<Answer>> + Send + 'static + use<>> {
        let mut req = self.http.request(method, format!("{}{path}", self.base));
        for (name, value) in headers {
            req = req.header(*name, value);
        }
        if auth {
            let (token, _) = self.token.as_ref().ok_or_else(|| {
                ClientError::Protocol("authenticated call without a session".into())
            })?;
            req = req.bearer_auth(token.as_str());
        }
        if let Some(b) = body {
            req = req.header(CONTENT_TYPE, b.content_type).body(b.bytes);
            for (name, value) in b.headers {
                req = req.header(name, value);
            }
        }
        Ok(async move {
            let mut resp = req.send().await.map_err(network)?;
            let status = resp.status();
            let headers = std::mem::take(resp.headers_mut());
            // Room for the whole answer at once (a blob's part is 8 MiB:
            // no copies as it grows), never for more than the limit.
            let room = resp.content_length().unwrap_or(0).min(limit as u64);
            let mut bytes = Vec::with_capacity(usize::try_from(room).unwrap_or(limit));
            while bytes.len() <= limit {
                match resp.chunk().await.map_err(network)? {
                    Some(chunk) => bytes.extend_from_slice(&chunk),
                    None => break,
                }
            }
            Ok(Answer {
                status,
                headers,
                bytes,
            })
        })
    }
}

/// An answer as it came, its body read up to the caller's limit.
pub(crate) struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    bytes: Vec<u8>,
}

impl Answer {
    /// The headers and body of a success; a problem as a typed error.
    pub(crate) fn success(self) -> Result<(HeaderMap, Vec<u8>)> {
        if self.status.is_success() {
            Ok((self.headers, self.bytes))
        } else {
            Err(ClientError::Server(problem(self.status, &self.bytes)))
        }
    }
}

/// A request body and the headers that describe it.
#[derive(Debug, Clone)]
pub(crate) struct Body {
    content_type: &'static str,
    /// Shared: a request sent again (after a new login) copies nothing.
    bytes: bytes::Bytes,
    headers: Vec<(&'static str, String)>,
}

impl Body {
    pub(crate) fn new(content_type: &'static str, bytes: Vec<u8>) -> Self {
        Self {
            content_type,
            bytes: bytes.into(),
            headers: Vec::new(),
        }
    }

    pub(crate) fn header(mut self, name: &'static str, value: String) -> Self {
        self.headers.push((name, value));
        self
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
