//! The device: its home, its keys, its session with the server.

use crate::api::Api;
use crate::error::{ClientError, Result};
use crate::home::{Home, Passphrase};
use crate::mls;
use crate::provider::Provider;
use openmls::prelude::MlsGroup;
use openmls::prelude::{OpenMlsProvider, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use openmls_libcrux_crypto::CryptoProvider;
use openmls_traits::signatures::Signer;
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use serde::de::DeserializeOwned;
use std::cell::RefCell;
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
    pub(crate) home: Home,
    pub(crate) crypto: CryptoProvider,
    pub(crate) api: Api,
    pub(crate) me: DeviceAddress,
    pub(crate) domain: String,
    /// The device's MLS signature key, also its login key.
    pub(crate) signer: SignatureKeyPair,
    /// Groups loaded from the home, kept between operations (loading an
    /// X-Wing group costs more than using it). The database stays the
    /// truth: a copy is dropped whenever an operation on it fails.
    groups: RefCell<HashMap<ConversationId, MlsGroup>>,
    /// When devices and key packages were last checked (see `sync`).
    pub(crate) last_housekeeping: Option<Instant>,
    /// The last inbox position acknowledged, and when (see `sync`).
    pub(crate) last_ack: Option<(u64, Instant)>,
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
}

impl Client {
    /// Opens an enrolled home.
    pub fn open(path: &Path, passphrase: &Passphrase) -> Result<Self> {
        let home = Home::open_or_create(path, passphrase)?;
        let row = home
            .conn
            .query_row(
                "SELECT server, ca_pem, user, device, signature_key, domain FROM account WHERE id = 1",
                [],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, String>(3)?,
                        r.get::<_, Vec<u8>>(4)?,
                        r.get::<_, String>(5)?,
                    ))
                },
            )
            .optional()?
            .ok_or(ClientError::NotEnrolled)?;
        let (server, ca_pem, user, device, signature_key, domain) = row;
        let me = DeviceAddress::new(UserId::parse(&user)?, DeviceId::parse(&device)?);
        let crypto = new_crypto()?;
        let signer = {
            let p = Provider::new(&crypto, &home.conn);
            SignatureKeyPair::read(p.storage(), &signature_key, SignatureScheme::ED25519)
                .ok_or_else(|| ClientError::Home("the device's signature key is missing".into()))?
        };
        Ok(Self {
            api: Api::new(&server, &ca_pem)?,
            home,
            crypto,
            me,
            domain,
            signer,
            groups: RefCell::default(),
            last_housekeeping: None,
            last_ack: None,
        })
    }

    /// Creates this device's keys, enrols it with an invite code, and
    /// returns the enrolled client.
    pub async fn enroll(path: &Path, passphrase: &Passphrase, e: Enrollment<'_>) -> Result<Self> {
        let home = Home::open_or_create(path, passphrase)?;
        if let Some(who) = home
            .conn
            .query_row("SELECT user || '/' || device FROM account", [], |r| {
                r.get::<_, String>(0)
            })
            .optional()?
        {
            return Err(ClientError::AlreadyEnrolled(who));
        }
        let api = Api::new(e.server, e.ca_pem)?;
        let crypto = new_crypto()?;
        let me = DeviceAddress::new(e.user.clone(), DeviceId::from_bytes(rand::random()));
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).map_err(ClientError::mls)?;
        let (key_packages, last_resort) = {
            let p = Provider::new(&crypto, &home.conn);
            let tx = home.conn.unchecked_transaction()?;
            signer.store(p.storage()).map_err(ClientError::mls)?;
            let kps = (0..mls::KEY_PACKAGE_BATCH)
                .map(|_| mls::key_package(&p, &signer, &me, false).map(Into::into))
                .collect::<Result<Vec<_>>>()?;
            let lr = mls::key_package(&p, &signer, &me, true)?;
            tx.commit()?;
            (kps, lr)
        };
        let resp: EnrollResponse = api
            .call(
                Method::POST,
                "/v1/enroll",
                Some(&EnrollRequest {
                    user: me.user.clone(),
                    code: e.code.trim().to_owned(),
                    device: me.device,
                    signature_key: signer.public().to_vec().into(),
                    key_packages,
                    last_resort: last_resort.into(),
                }),
                false,
            )
            .await?;
        home.conn.execute(
            "INSERT INTO account (id, server, ca_pem, user, device, signature_key, domain)
             VALUES (1, ?1, ?2, ?3, ?4, ?5, ?6)",
            params![
                api.base(),
                e.ca_pem,
                me.user.as_str(),
                me.device.to_string(),
                signer.public(),
                resp.domain
            ],
        )?;
        if let Some(pinned) = e.directory_key
            && pinned != resp.directory_key.as_slice()
        {
            return Err(ClientError::Directory(
                "the server's directory key is not the one given with --directory-key".into(),
            ));
        }
        let mut client = Self {
            home,
            crypto,
            api,
            me,
            domain: resp.domain,
            signer,
            groups: RefCell::default(),
            last_housekeeping: None,
            last_ack: None,
        };
        client.pin_directory(resp.directory_key.as_slice(), resp.root.as_slice())?;
        // What the directory holds for this user now is known, not news.
        client.check_own_history(true).await?;
        let me = client.me.user.clone();
        client.prove_user(&me).await?;
        Ok(client)
    }

    /// This device.
    pub fn me(&self) -> &DeviceAddress {
        &self.me
    }

    /// The server this device is enrolled with.
    pub fn server(&self) -> &str {
        self.api.base()
    }

    pub(crate) fn provider(&self) -> Provider<'_> {
        Provider::new(&self.crypto, &self.home.conn)
    }

    /// Runs `f` on a conversation's group. The group stays in memory for
    /// the next operation if `f` succeeds, and is dropped if it fails.
    pub(crate) fn with_group<T>(
        &self,
        conv: &ConversationId,
        f: impl FnOnce(&mut MlsGroup, &Provider<'_>) -> Result<T>,
    ) -> Result<T> {
        let p = self.provider();
        let cached = self.groups.borrow_mut().remove(conv);
        let mut group = match cached {
            Some(g) => g,
            None => mls::load_group(&p, conv)?.ok_or_else(|| ClientError::NotFound {
                kind: "conversation",
                id: conv.to_string(),
            })?,
        };
        let out = f(&mut group, &p)?;
        self.groups.borrow_mut().insert(*conv, group);
        Ok(out)
    }

    /// Drops the in-memory copy of a group (the next use reloads it).
    pub(crate) fn forget_group(&self, conv: &ConversationId) {
        self.groups.borrow_mut().remove(conv);
    }

    /// Drops every in-memory group (after a rollback).
    pub(crate) fn forget_groups(&self) {
        self.groups.borrow_mut().clear();
    }

    /// Runs `f` in one database transaction. If anything fails, nothing of
    /// it remains: the transaction rolls back and in-memory groups, which
    /// may be ahead of the database, are dropped.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let tx = self.home.conn.unchecked_transaction()?;
        let out = f().and_then(|v| {
            tx.commit()?;
            Ok(v)
        });
        if out.is_err() {
            self.groups.borrow_mut().clear();
        }
        out
    }

    /// Proves possession of the device key and takes a fresh token.
    async fn login(&mut self) -> Result<()> {
        let who = ChallengeRequest {
            user: self.me.user.clone(),
            device: self.me.device,
        };
        let ch: ChallengeResponse = self
            .api
            .call(Method::POST, "/v1/auth/challenge", Some(&who), false)
            .await?;
        let content = auth_signed_content(&self.domain, &self.me, ch.challenge.as_slice());
        let signature = self.signer.sign(&content).map_err(ClientError::mls)?;
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
        if !self.api.fresh_token() {
            self.login().await?;
        }
        match self.api.call(method.clone(), path, body, true).await {
            Err(e) if e.is_server(ErrorCode::Unauthorized) => {
                self.api.forget_token();
                self.login().await?;
                self.api.call(method, path, body, true).await
            }
            other => other,
        }
    }
}

fn new_crypto() -> Result<CryptoProvider> {
    CryptoProvider::new().map_err(ClientError::mls)
}

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}
