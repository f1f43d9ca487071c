//! Light receivers: devices that are real to the server (enrolled with real
//! MLS key packages, logged in, added to the conversation by a real client,
//! long-polling their inbox over TLS like any client, the cursor of each
//! read acknowledging the page before) but
//! that never decrypt. A hundred full clients decrypting every letter would
//! measure the clients' CPU on this shared machine, not the server's fan-out.
//!
//! Their private keys live in memory only; they never join the group.

use anyhow::{Context, Result};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;
use serde::de::DeserializeOwned;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use valise_client::mls::KEY_PACKAGE_BATCH;
use valise_mls::{CIPHERSUITE, serialize};
use valise_proto::api::{
    ChallengeRequest, ChallengeResponse, EnrollRequest, EnrollResponse, TokenRequest,
    TokenResponse, auth_signed_content,
};
use valise_proto::wire::{self, EntryKind, InboxPage};
use valise_proto::{DeviceAddress, DeviceId, UserId};

/// Entries asked for per inbox read (the server's maximum page).
const PAGE: usize = valise_proto::limits::MAX_INBOX_PAGE;

/// An enrolled, logged-in device that only drains its inbox.
pub struct LightDevice {
    http: reqwest::Client,
    base: String,
    token: String,
    pub user: UserId,
    /// The cursor after the last page read (`None`: from the start).
    cursor: Option<Vec<u8>>,
}

/// A TLS 1.3 client pinned to the server's CA, as the client engine builds it.
pub fn http(ca_pem: &str) -> Result<reqwest::Client> {
    let mut roots = rustls::RootCertStore::empty();
    let mut reader = std::io::BufReader::new(ca_pem.as_bytes());
    for cert in rustls_pki_types::pem::PemObject::pem_reader_iter(&mut reader) {
        let cert: rustls_pki_types::CertificateDer<'static> = cert?;
        roots.add(cert)?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut tls = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(&[&rustls::version::TLS13])?
        .with_root_certificates(roots)
        .with_no_client_auth();
    tls.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(reqwest::Client::builder()
        .use_preconfigured_tls(tls)
        .timeout(Duration::from_secs(120))
        .build()?)
}

impl LightDevice {
    /// Enrols a new device of `user` with an invite code, then logs in.
    pub async fn enroll(base: &str, ca_pem: &str, user: UserId, code: &str) -> Result<Self> {
        let provider = openmls_libcrux_crypto::Provider::new()?;
        let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm())?;
        let me = DeviceAddress::new(user.clone(), DeviceId::from_bytes(rand::random()));
        let now_s = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
        let key_package = |last_resort: bool| -> Result<Vec<u8>> {
            let bundle =
                valise_mls::key_package::build(&provider, &signer, &me, last_resort, now_s)?;
            Ok(serialize(bundle.key_package())?)
        };
        let key_packages = (0..KEY_PACKAGE_BATCH)
            .map(|_| key_package(false).map(Into::into))
            .collect::<Result<Vec<_>>>()?;
        let mut dev = Self {
            http: http(ca_pem)?,
            base: base.trim_end_matches('/').to_owned(),
            token: String::new(),
            user,
            cursor: None,
        };
        let enrolled: EnrollResponse = dev
            .post(
                "/v1/enroll",
                &EnrollRequest {
                    user: me.user.clone(),
                    code: code.to_owned(),
                    device: me.device,
                    signature_key: signer.public().to_vec().into(),
                    key_packages,
                    last_resort: key_package(true)?.into(),
                },
            )
            .await?;
        let who = ChallengeRequest {
            user: me.user.clone(),
            device: me.device,
        };
        let ch: ChallengeResponse = dev.post("/v1/auth/challenge", &who).await?;
        let content = auth_signed_content(&enrolled.domain, &me, ch.challenge.as_slice());
        let tok: TokenResponse = dev
            .post(
                "/v1/auth/token",
                &TokenRequest {
                    user: who.user,
                    device: who.device,
                    challenge: ch.challenge,
                    signature: signer
                        .sign(&content)
                        .map_err(|e| anyhow::anyhow!("signing the challenge: {e:?}"))?
                        .into(),
                },
            )
            .await?;
        dev.token = tok.token;
        Ok(dev)
    }

    /// Reads past what is queued now (the Welcome and the conversation's
    /// settings), so that [`LightDevice::drain`] counts letters only.
    pub async fn skip_queued(&mut self) -> Result<()> {
        while !self.page(0).await?.entries.is_empty() {}
        Ok(())
    }

    /// Reads (long-polling) the inbox until `letters` application entries
    /// arrived or `deadline` passed; returns how many. The last cursor is
    /// sent once more at the end, acknowledging everything.
    pub async fn drain(mut self, letters: u64, deadline: Instant) -> Result<u64> {
        let mut seen = 0;
        while seen < letters && Instant::now() < deadline {
            let page = self.page(1000).await?;
            seen += page
                .entries
                .iter()
                .filter(|e| e.kind == EntryKind::Application)
                .count() as u64;
        }
        self.page(0).await?;
        Ok(seen)
    }

    async fn page(&mut self, wait_ms: u64) -> Result<InboxPage> {
        let mut path = format!("/v1/inbox?limit={PAGE}&wait_ms={wait_ms}");
        if let Some(c) = &self.cursor {
            path.push_str(&format!("&after={}", hex::encode(c)));
        }
        let body = self.fetch(self.http.get(self.url(&path))).await?;
        let page = wire::decode_page(&body).context("inbox page")?;
        self.cursor = Some(page.cursor.clone());
        Ok(page)
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    async fn post<B: serde::Serialize, R: DeserializeOwned>(&self, path: &str, b: &B) -> Result<R> {
        self.send(self.http.post(self.url(path)).json(b)).await
    }

    async fn send<R: DeserializeOwned>(&self, req: reqwest::RequestBuilder) -> Result<R> {
        serde_json::from_slice(&self.fetch(req).await?).context("response body")
    }

    async fn fetch(&self, req: reqwest::RequestBuilder) -> Result<Vec<u8>> {
        let req = if self.token.is_empty() {
            req
        } else {
            req.bearer_auth(&self.token)
        };
        let resp = req.send().await?;
        let status = resp.status();
        let body = resp.bytes().await?;
        if !status.is_success() {
            anyhow::bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        Ok(body.to_vec())
    }
}
