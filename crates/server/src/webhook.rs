//! The alert webhook (`valised run --webhook URL`): each server alert is
//! POSTed as one JSON object ([`crate::rules::Alert`]) to the operator's
//! SIEM or chat bridge.
//!
//! ```text
//! audit writer ──try_send──▶ bounded queue ([`QUEUE`]) ──▶ delivery task ──POST, retries──▶ URL
//! ```
//!
//! Nothing waits for the webhook: the audit writer only offers the alert
//! to a bounded queue, and a full queue (the receiver down for long)
//! drops the alert with a log line. The alert is in the database and the
//! audit log either way; the webhook is a notification, not the record.
//!
//! Plain HTTP is allowed only to a loopback address (a local agent);
//! anything else must be HTTPS, checked against the system's roots (the
//! first bundle of [`SYSTEM_BUNDLES`] that exists) or, with
//! `--webhook-ca FILE`, against that file's certificates only.
//!
//! A webhook URL often carries its own secret (a token in the path or the
//! query), so no log line and no error message shows more of it than its
//! host ([`host_of`]).

use crate::background::{Background, StopSignal};
use crate::rules::Alert;
use reqwest::Url;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tokio::sync::mpsc;

/// Most alerts waiting for the webhook.
pub const QUEUE: usize = 1024;

/// Tries per alert, and the wait before the first retry (doubled each time).
const TRIES: u32 = 5;
const FIRST_RETRY: Duration = Duration::from_secs(1);

/// Where the system's CA bundle lives on the usual distributions.
pub const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Why the webhook cannot be set up; one line for the operator.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WebhookError {
    #[error("webhook: not an http(s) URL with a host")]
    NotUrl,
    #[error(
        "webhook to {0}: plain http is allowed only to a loopback address; use https (with webhook_ca for a private CA)"
    )]
    NotHttps(String),
    #[error("webhook_ca {path}: {reason}")]
    Ca { path: String, reason: String },
    #[error("webhook: no system CA bundle found (looked in {0}); give webhook_ca")]
    NoSystemRoots(String),
    #[error("webhook client: {0}")]
    Client(String),
}

impl WebhookError {
    /// Stable snake_case code.
    pub fn code(&self) -> &'static str {
        match self {
            Self::NotUrl => "webhook_not_url",
            Self::NotHttps(_) => "webhook_not_https",
            Self::Ca { .. } => "webhook_ca",
            Self::NoSystemRoots(_) => "webhook_no_roots",
            Self::Client(_) => "webhook_client",
        }
    }
}

/// Parses the webhook's URL: https, or http to a loopback address.
pub fn parse_url(url: &str) -> Result<Url, WebhookError> {
    let parsed = Url::parse(url).map_err(|_| WebhookError::NotUrl)?;
    let host = parsed.host_str().ok_or(WebhookError::NotUrl)?;
    let loopback = host.eq_ignore_ascii_case("localhost")
        || host
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<IpAddr>()
            .is_ok_and(|ip| ip.is_loopback());
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if loopback => Ok(parsed),
        _ => Err(WebhookError::NotHttps(host_of(&parsed))),
    }
}

/// The webhook as logs may show it: scheme, host and port, never the path
/// or query (where such URLs keep their secret).
pub fn host_of(url: &Url) -> String {
    format!(
        "{}://{}{}",
        url.scheme(),
        url.host_str().unwrap_or("?"),
        url.port().map(|p| format!(":{p}")).unwrap_or_default()
    )
}

/// The handle the audit writer offers alerts to.
#[derive(Debug, Clone)]
pub struct Webhook {
    tx: mpsc::Sender<Alert>,
}

impl Webhook {
    /// Starts the delivery task (among `background`) for `url`, trusting
    /// `ca`'s certificates, or the system's without it.
    pub fn start(
        url: Url,
        ca: Option<&Path>,
        background: &Background,
    ) -> Result<Self, WebhookError> {
        let http = client(ca)?;
        let (tx, rx) = mpsc::channel(QUEUE);
        background.spawn("webhook", deliver(http, url, rx, background.signal()));
        Ok(Self { tx })
    }

    /// Offers an alert; never waits.
    pub fn offer(&self, alert: &Alert) {
        if self.tx.try_send(alert.clone()).is_err() {
            tracing::warn!(
                id = alert.id,
                kind = alert.kind.as_str(),
                "webhook queue full or stopped: alert not sent (it is in `valised alerts`)"
            );
        }
    }
}

fn client(ca: Option<&Path>) -> Result<reqwest::Client, WebhookError> {
    let path: PathBuf = match ca {
        Some(p) => p.to_owned(),
        None => SYSTEM_BUNDLES
            .iter()
            .map(PathBuf::from)
            .find(|p| p.exists())
            .ok_or_else(|| WebhookError::NoSystemRoots(SYSTEM_BUNDLES.join(", ")))?,
    };
    let ca_error = |reason: String| WebhookError::Ca {
        path: path.display().to_string(),
        reason,
    };
    let pem = std::fs::read(&path).map_err(|e| ca_error(e.to_string()))?;
    let roots = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| ca_error(e.to_string()))?;
    if roots.is_empty() {
        return Err(ca_error("holds no certificate".into()));
    }
    roots
        .into_iter()
        .fold(
            reqwest::Client::builder().tls_built_in_root_certs(false),
            reqwest::ClientBuilder::add_root_certificate,
        )
        .connect_timeout(Duration::from_secs(10))
        .timeout(Duration::from_secs(30))
        .build()
        .map_err(|e| WebhookError::Client(e.without_url().to_string()))
}

/// Posts each alert in turn, retrying with a doubling wait; gives up on an
/// alert after [`TRIES`], and stops with the server.
async fn deliver(
    http: reqwest::Client,
    url: Url,
    mut rx: mpsc::Receiver<Alert>,
    mut stop: StopSignal,
) {
    loop {
        let alert = tokio::select! {
            a = rx.recv() => match a {
                Some(a) => a,
                None => return,
            },
            _ = stop.stopped() => return,
        };
        let mut wait = FIRST_RETRY;
        for attempt in 1..=TRIES {
            let outcome = http.post(url.clone()).json(&alert).send().await;
            match outcome.map(|r| r.status()) {
                Ok(status) if status.is_success() => break,
                Ok(status) => {
                    tracing::warn!(id = alert.id, attempt, %status, "webhook refused an alert")
                }
                Err(e) => {
                    tracing::warn!(id = alert.id, attempt, error = %e.without_url(), "webhook unreachable")
                }
            }
            if attempt == TRIES {
                tracing::error!(
                    id = alert.id,
                    "alert not delivered to the webhook; giving up"
                );
                break;
            }
            tokio::select! {
                _ = tokio::time::sleep(wait) => {}
                _ = stop.stopped() => return,
            }
            wait = wait.saturating_mul(2);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_to_loopback() {
        assert!(parse_url("http://127.0.0.1:9000/hook").is_ok());
        assert!(parse_url("http://[::1]:9000/hook").is_ok());
        assert!(parse_url("http://localhost/hook").is_ok());
        assert!(parse_url("https://siem.mfa.example/hook").is_ok());
        let refused = parse_url("http://siem.mfa.example/hook?token=s3cret").unwrap_err();
        assert_eq!(refused.code(), "webhook_not_https");
        assert!(!refused.to_string().contains("s3cret"), "{refused}");
        assert_eq!(
            parse_url("http://192.0.2.1/hook").unwrap_err().code(),
            "webhook_not_https"
        );
        assert_eq!(parse_url("siem").unwrap_err().code(), "webhook_not_url");
        assert_eq!(
            parse_url("ftp://127.0.0.1/").unwrap_err().code(),
            "webhook_not_https"
        );
    }

    #[test]
    fn a_webhook_ca_must_hold_certificates() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        assert_eq!(client(Some(&missing)).unwrap_err().code(), "webhook_ca");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        assert_eq!(client(Some(&empty)).unwrap_err().code(), "webhook_ca");
        let ca = rcgen::generate_simple_self_signed(vec!["siem.mfa.example".into()]).unwrap();
        let pem = dir.path().join("ca.pem");
        std::fs::write(&pem, ca.cert.pem()).unwrap();
        assert!(client(Some(&pem)).is_ok());
    }
}
