//! The device without its network: its home, its keys, its MLS groups.
//!
//! Everything a device decides about what it is shown lives here, with no
//! I/O but the home's database: which entries of its inbox it applies
//! ([`inbound`]) or keeps until their epoch's commit comes ([`held`]), what it seals and holds back ([`outbound`]), the commits
//! it builds ([`membership`]), which keys and identities it believes
//! ([`identity`]), who may read a marked letter ([`accreditation`]), and whether a group state from the server may be taken
//! after it fell out of step ([`rejoin`]). [`crate::Client`] drives it over
//! the network; the tests drive several engines against each other with no
//! server at all.
//!
//! ```text
//! Client (async, HTTPS) ──▶ Engine (sync) ──▶ Home (the only SQL)
//!                                  └──────▶ openmls (groups in the same database)
//! ```

pub mod accreditation;
pub mod ceiling;
pub mod desk;
pub mod held;
pub mod identity;
pub mod inbound;
pub mod membership;
pub mod outbound;
pub mod rejoin;
pub mod roots;
#[cfg(test)]
mod tests;

use crate::alert::AlertKind;
use crate::clock::Clock;
use crate::error::{ClientError, Result};
use crate::home::Home;
use crate::mls;
use crate::provider::Provider;
use openmls::prelude::{MlsGroup, OpenMlsProvider, SignatureScheme};
use openmls_basic_credential::SignatureKeyPair;
use openmls_libcrux_crypto::CryptoProvider;
use std::cell::RefCell;
use std::collections::HashMap;
use valise_proto::{ConversationId, DeviceAddress};

/// One device's state and keys.
pub struct Engine {
    pub(crate) home: Home,
    pub(crate) crypto: CryptoProvider,
    pub(crate) me: DeviceAddress,
    /// The device's MLS signature key, also its login key and the key it
    /// approves and revokes its user's devices with.
    pub(crate) signer: SignatureKeyPair,
    pub(crate) clock: Clock,
    /// Groups loaded from the home, kept between operations (loading an
    /// X-Wing group costs more than using it). The database stays the
    /// truth: a copy is dropped whenever an operation on it fails.
    groups: RefCell<HashMap<ConversationId, MlsGroup>>,
    /// What stays true once computed, kept off the database on the hot
    /// path (each letter sealed or opened).
    cache: RefCell<Cache>,
    /// The pinned accreditation authority and the attestations verified
    /// under it; loaded on first use.
    clearances: RefCell<Option<crate::accreditation::Clearances>>,
    /// Conversations whose members or ceiling changed: checked against the
    /// ceiling once their users' entries are read afresh ([`ceiling`]).
    roster_checks: RefCell<std::collections::BTreeSet<ConversationId>>,
    /// Users whose directory entry was proven during the current read of
    /// the inbox: a marked letter is refused only on such entries (an
    /// older one may predate an accreditation just published).
    proven_this_read: RefCell<std::collections::BTreeSet<valise_proto::UserId>>,
}

/// See [`Engine::cache`].
#[derive(Default)]
struct Cache {
    /// The root stamped into what this device sends (the ledger's newest);
    /// dropped whenever the ledger moves or a transaction rolls back.
    stamp: Option<Vec<u8>>,
    /// Roots members sent that were found consistent with this device's
    /// view (a fact that stays true).
    consistent: std::collections::HashSet<Vec<u8>>,
}

/// Most consistent roots remembered; past it the set starts over.
const MAX_CACHED_ROOTS: usize = 64;

impl Engine {
    /// The engine of an enrolled home.
    pub fn load(home: Home, clock: Clock) -> Result<Self> {
        let account = home.account()?.ok_or(ClientError::NotEnrolled)?;
        let crypto = new_crypto()?;
        let signer = SignatureKeyPair::read(
            Provider::new(&crypto, home.connection()).storage(),
            &account.signature_key,
            SignatureScheme::ED25519,
        )
        .ok_or_else(|| ClientError::Home("the device's signature key is missing".into()))?;
        Ok(Self::new(home, crypto, account.me, signer, clock))
    }

    /// An engine for a device whose keys were just made (enrolment, tests).
    pub fn new(
        home: Home,
        crypto: CryptoProvider,
        me: DeviceAddress,
        signer: SignatureKeyPair,
        clock: Clock,
    ) -> Self {
        Self {
            home,
            crypto,
            me,
            signer,
            clock,
            groups: RefCell::default(),
            cache: RefCell::default(),
            clearances: RefCell::default(),
            roster_checks: RefCell::default(),
            proven_this_read: RefCell::default(),
        }
    }

    /// This device.
    pub fn me(&self) -> &DeviceAddress {
        &self.me
    }

    pub(crate) fn provider(&self) -> Provider<'_> {
        Provider::new(&self.crypto, self.home.connection())
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.clock.now_ms()
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

    /// Drops every in-memory group, the root stamp and the attestation
    /// lists read from the directory (after a rollback).
    pub(crate) fn forget_groups(&self) {
        self.groups.borrow_mut().clear();
        self.cache.borrow_mut().stamp = None;
        self.forget_clearances(None);
    }

    /// Runs `f` atomically. If anything fails, nothing of it remains: the
    /// home rolls back, and in-memory groups, which may be ahead of it, are
    /// dropped.
    pub(crate) fn transaction<T>(&self, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let out = self.home.transaction(f);
        if out.is_err() {
            self.forget_groups();
        }
        out
    }

    /// Records an alert and queues its report to the security desk, in
    /// one transaction (inside the caller's, if any): the only place
    /// alerts are raised, so none escapes the desk ([`desk`]).
    pub(crate) fn raise(
        &self,
        kind: AlertKind,
        conversation: Option<&ConversationId>,
        detail: &str,
        evidence: Option<&[u8]>,
    ) -> Result<()> {
        tracing::warn!(kind = kind.as_str(), detail, "ALERT");
        self.home.transaction(|| {
            self.home.insert_alert(
                self.now_ms(),
                kind.as_str(),
                conversation.map(|c| c.to_string()),
                detail,
                evidence,
            )?;
            self.report_to_desk(kind, conversation, detail, evidence)
        })
    }
}

pub(crate) fn new_crypto() -> Result<CryptoProvider> {
    CryptoProvider::new().map_err(ClientError::mls)
}
