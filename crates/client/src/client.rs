//! The device on the network: its [`Engine`] and its session with its
//! server.

use crate::api::{Api, Body};
use crate::clock::Clock;
use crate::engine::{Engine, new_crypto};
use crate::error::{ClientError, Result};
use crate::handling::Settings;
use crate::home::account::Account;
use crate::home::alerts::Alert;
use crate::home::{Home, Passphrase, Retake};
use crate::mls;
use openmls::prelude::{OpenMlsProvider, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use openmls_traits::signatures::Signer;
use reqwest::Method;
use reqwest::header::HeaderMap;
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::collections::HashMap;
use std::path::Path;
use std::time::Instant;
use valise_proto::api::{
    ChallengeRequest, ChallengeResponse, EnrollRequest, EnrollResponse, TokenRequest,
    TokenResponse, auth_signed_content,
};
use valise_proto::{ConversationId, DeviceAddress, DeviceId, ErrorCode, UserId};

/// One enrolled device. Every front end drives Valise through this type.
pub struct Client {
    pub(crate) engine: Engine,
    pub(crate) api: Api,
    pub(crate) domain: String,
    /// When devices, members and key packages were last checked (see `sync`).
    /// Reading the inbox again after the server was restored: replays of
    /// what this device applied already are counted without an alert until
    /// the inbox is read through (anything else still alerts).
    pub(crate) rereading: bool,
    pub(crate) last_housekeeping: Option<Instant>,
    /// When each conversation's members were last checked against the
    /// directory: a long-running client checks before writing at most once
    /// per [`crate::sync::HOUSEKEEPING_EVERY`] (a one-shot command always).
    pub(crate) members_checked: HashMap<ConversationId, Instant>,
    /// How long this device keeps its own leaf's keys in a conversation
    /// before it renews them (I3: 24 hours unless configured).
    pub(crate) update_interval_ms: i64,
    /// Told how attachment transfers advance (the CLI draws a bar).
    pub(crate) progress: Option<crate::attachments::Progress>,
    /// Where marked letters may go ([`crate::handling`]): the home's
    /// `settings.json`.
    pub(crate) settings: Settings,
    /// When each letter waiting as a draft may be tried again.
    pub(crate) draft_retries: crate::draft_retry::DraftRetries,
    /// Letters whose cached attachments a front end still reads.
    pub(crate) cache_holds: crate::cache_holds::Holds,
    /// Another process wrote while an operation had the home released and
    /// took it back itself ([`Client::retake_within`]): the caller's next
    /// [`Client::try_retake_home`] says [`Retake::Changed`], so a front end
    /// still learns of it (the bridge tells its sessions).
    pub(crate) changed_unseen: bool,
    /// The attachment [`Client::cache_attachment`] is downloading. Still
    /// set as the next begins, that one was cut off (its future dropped:
    /// the bridge's session went): its pieces go then, since no other
    /// process can tell them from those of a download in progress.
    pub(crate) downloading: Option<(i64, usize)>,
}

/// What `enroll` needs besides the home.
pub struct Enrollment<'a> {
    pub server: &'a str,
    pub ca_pem: &'a str,
    pub user: &'a UserId,
    pub code: &'a str,
    /// The directory key as given out of band; without it, the device
    /// trusts the key the server names at enrolment.
    pub directory_key: Option<&'a [u8]>,
    /// The accreditation authority key's fingerprint (hex SHA-256) as
    /// given out of band; without it, the key the server names is pinned.
    pub authority_fingerprint: Option<&'a str>,
}

/// The longest wait between two tries to take the home back from another
/// process (the first tries come sooner).
const RETAKE_AT_MOST_EVERY: std::time::Duration = std::time::Duration::from_millis(20);

/// Leaf keys are renewed at least this often by default (I3).
pub const DEFAULT_UPDATE_INTERVAL_MS: i64 = 24 * 60 * 60 * 1000;

impl Client {
    /// Opens an enrolled home.
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self> {
        let home = Home::open_or_create(path, passphrase)?;
        let account = home.account()?.ok_or(ClientError::NotEnrolled)?;
        let engine = Engine::load(home, Clock::system())?;
        Ok(Self::new(
            engine,
            Api::new(&account.server, &account.ca_pem)?,
            account.domain,
            Settings::load(path)?,
        ))
    }

    fn new(engine: Engine, api: Api, domain: String, settings: Settings) -> Self {
        Self {
            engine,
            api,
            domain,
            settings,
            last_housekeeping: None,
            rereading: false,
            members_checked: HashMap::new(),
            update_interval_ms: DEFAULT_UPDATE_INTERVAL_MS,
            progress: None,
            draft_retries: Default::default(),
            cache_holds: Default::default(),
            changed_unseen: false,
            downloading: None,
        }
    }

    /// Creates this device's keys, enrols it with an invite code, and
    /// returns the enrolled client. Whether the device founded its user's
    /// identity or waits for approval is in [`Client::own_devices`].
    pub async fn enroll(path: &Path, passphrase: &Passphrase, e: Enrollment<'_>) -> Result<Self> {
        let home = Home::open_or_create(path, passphrase)?;
        if let Some(a) = home.account()? {
            return Err(ClientError::AlreadyEnrolled(a.me.to_string()));
        }
        let api = Api::new(e.server, e.ca_pem)?;
        let crypto = new_crypto()?;
        let me = DeviceAddress::new(e.user.clone(), DeviceId::from_bytes(rand::random()));
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).map_err(ClientError::mls)?;
        signer
            .store(crate::provider::Provider::new(&crypto, home.connection()).storage())
            .map_err(ClientError::mls)?;
        let engine = Engine::new(home, crypto, me.clone(), signer, Clock::system());
        let (key_packages, last_resort) = engine.key_packages(true)?;
        let resp: EnrollResponse = api
            .call(
                Method::POST,
                "/v1/enroll",
                Some(&EnrollRequest {
                    user: me.user.clone(),
                    code: e.code.trim().to_owned(),
                    device: me.device,
                    signature_key: engine.signer.public().to_vec().into(),
                    key_packages: key_packages.packages,
                    last_resort: last_resort.ok_or_else(|| {
                        ClientError::Mls("no last-resort key package was made".into())
                    })?,
                }),
                false,
            )
            .await?;
        if let Some(pinned) = e.directory_key
            && pinned != resp.directory_key.as_slice()
        {
            return Err(ClientError::Directory(
                "the server's directory key is not the one given with --directory-key".into(),
            ));
        }
        // Before anything is kept: a device that would pin another
        // authority than the one announced is not made.
        engine.pin_authority(
            resp.accreditation_authority.as_deref(),
            e.authority_fingerprint,
        )?;
        engine.home.insert_account(&Account {
            server: api.base().to_owned(),
            ca_pem: e.ca_pem.to_owned(),
            me,
            signature_key: engine.signer.public().to_vec(),
            domain: resp.domain.clone(),
        })?;
        engine
            .home
            .set_key_packages_until(key_packages.until, Some(key_packages.until))?;
        if let Some(audit) = &resp.audit {
            let key = hex::decode(&audit.key)
                .map_err(|_| ClientError::Protocol("the audit key is not hex".into()))?;
            // What the log holds from before now is about this enrolment.
            engine
                .home
                .pin_audit(&audit.origin, &key, resp.audit_from)?;
        }
        engine.pin_desk(resp.security_desk.as_ref())?;
        let mut client = Self::new(engine, api, resp.domain, Settings::load(path)?);
        client.pin_directory(resp.directory_key.as_slice(), resp.root.as_slice())?;
        // What the directory holds for this user now is known, not news.
        client.check_own_history(true).await?;
        let me = client.engine.me.user.clone();
        client.prove_user(&me).await?;
        Ok(client)
    }

    /// This device.
    pub fn me(&self) -> &DeviceAddress {
        &self.engine.me
    }

    /// The server this device is enrolled with.
    pub fn server(&self) -> &str {
        self.api.base()
    }

    /// The engine, for front ends that read the home (and tests).
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Lets other processes use the home (`valise` commands beside a
    /// long-running front end) until [`Client::try_retake_home`]; this
    /// client must not be used meanwhile. A one-shot command never needs
    /// it: it holds the home from open to exit.
    pub fn release_home(&mut self) -> Result<()> {
        self.engine.release()
    }

    /// Takes the home back unless another process uses it
    /// ([`Retake::Busy`]: try again later); what another process wrote
    /// meanwhile is read afresh.
    pub fn try_retake_home(&mut self) -> Result<Retake> {
        Ok(match self.engine.try_retake()? {
            Retake::Busy => Retake::Busy,
            _ if std::mem::take(&mut self.changed_unseen) => Retake::Changed,
            found => found,
        })
    }

    /// Takes the home back inside an operation that released it (a
    /// download waiting for the network); a change by another process
    /// meanwhile is kept for the caller's next retake to report.
    pub(crate) async fn retake_within(&mut self) -> Result<()> {
        if self.retake_home().await? == Retake::Changed {
            self.changed_unseen = true;
        }
        Ok(())
    }

    /// Takes the home back, waiting for the process that uses it (polled:
    /// a blocking wait would stall the async runtime); what another process
    /// wrote meanwhile is read afresh ([`Retake::Changed`] says so).
    pub async fn retake_home(&mut self) -> Result<Retake> {
        let mut wait = std::time::Duration::from_millis(1);
        loop {
            match self.try_retake_home()? {
                Retake::Busy => {
                    tokio::time::sleep(wait).await;
                    wait = (wait * 2).min(RETAKE_AT_MOST_EVERY);
                }
                taken => return Ok(taken),
            }
        }
    }

    /// Sets how long this device keeps its leaf's keys before renewing them.
    pub fn set_update_interval_ms(&mut self, ms: i64) {
        self.update_interval_ms = ms;
    }

    /// Every alert, oldest first.
    pub fn alerts(&self) -> Result<Vec<Alert>> {
        self.engine.home.alerts(false)
    }

    /// Alerts not yet shown by this call, which marks them seen.
    pub fn take_new_alerts(&self) -> Result<Vec<Alert>> {
        let new = self.engine.home.alerts(true)?;
        if let Some(last) = new.last() {
            self.engine.home.mark_alerts_seen(last.id)?;
        }
        Ok(new)
    }

    /// Logs in unless the token is still fresh.
    pub(crate) async fn session(&mut self) -> Result<()> {
        if !self.api.fresh_token() {
            self.login().await?;
        }
        Ok(())
    }

    /// Takes a new token: the server has forgotten this one.
    pub(crate) async fn relogin(&mut self) -> Result<()> {
        self.api.forget_token();
        self.login().await
    }

    /// Proves possession of the device key and takes a fresh token.
    async fn login(&mut self) -> Result<()> {
        let who = ChallengeRequest {
            user: self.engine.me.user.clone(),
            device: self.engine.me.device,
        };
        let ch: ChallengeResponse = self
            .api
            .call(Method::POST, "/v1/auth/challenge", Some(&who), false)
            .await?;
        let content = auth_signed_content(&self.domain, &self.engine.me, ch.challenge.as_slice());
        let signature = self
            .engine
            .signer
            .sign(&content)
            .map_err(ClientError::mls)?;
        let tok: TokenResponse = self
            .api
            .call(
                Method::POST,
                "/v1/auth/token",
                Some(&TokenRequest {
                    user: who.user,
                    device: who.device,
                    challenge: ch.challenge,
                    signature: signature.into(),
                }),
                false,
            )
            .await?;
        self.api.set_token(tok.token, tok.expires_in_s);
        Ok(())
    }

    /// An authenticated call; logs in first if needed, and once more if the
    /// server has forgotten the token.
    pub(crate) async fn call<B: Serialize + ?Sized, R: DeserializeOwned>(
        &mut self,
        method: Method,
        path: &str,
        body: Option<&B>,
    ) -> Result<R> {
        self.session().await?;
        match self.api.call(method.clone(), path, body, true).await {
            Err(e) if e.is_server(ErrorCode::Unauthorized) => {
                self.relogin().await?;
                self.api.call(method, path, body, true).await
            }
            other => other,
        }
    }

    /// An authenticated call with a binary body and answer, logging in as
    /// [`Client::call`] does.
    pub(crate) async fn call_binary(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Vec<u8>> {
        self.call_with_headers(method, path, body, &[])
            .await
            .map(|(_, bytes)| bytes)
    }

    /// As [`Client::call_binary`], with request and answer headers.
    pub(crate) async fn call_with_headers(
        &mut self,
        method: Method,
        path: &str,
        body: Option<Body>,
        headers: &[(&'static str, String)],
    ) -> Result<(HeaderMap, Vec<u8>)> {
        self.session().await?;
        match self
            .api
            .exchange(method.clone(), path, body.clone(), headers, true)
            .await
        {
            Err(e) if e.is_server(ErrorCode::Unauthorized) => {
                self.relogin().await?;
                self.api.exchange(method, path, body, headers, true).await
            }
            other => other,
        }
    }
}

/// Key packages made for an upload, with when the earliest expires.
pub(crate) struct Batch {
    pub packages: Vec<valise_proto::bytes::Bytes>,
    pub until: u64,
}

impl Engine {
    /// A batch of one-time key packages (and a last-resort one, if asked),
    /// their private keys stored in the home.
    pub(crate) fn key_packages(
        &self,
        last_resort: bool,
    ) -> Result<(Batch, Option<valise_proto::bytes::Bytes>)> {
        self.transaction(|| {
            let p = self.provider();
            let now = self.clock.now_s();
            let packages = (0..mls::KEY_PACKAGE_BATCH)
                .map(|_| mls::key_package(&p, &self.signer, &self.me, false, now).map(Into::into))
                .collect::<Result<Vec<_>>>()?;
            let lr = last_resort
                .then(|| mls::key_package(&p, &self.signer, &self.me, true, now).map(Into::into))
                .transpose()?;
            let until = now + valise_mls::key_package::KEY_PACKAGE_LIFETIME_S;
            Ok((Batch { packages, until }, lr))
        })
    }
}
