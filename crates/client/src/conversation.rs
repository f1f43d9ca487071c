//! Conversations over the network: creating them, and every commit that
//! changes who reads them.
//!
//! Membership changes are commits submitted to the hub for the current
//! epoch. The hub accepts one commit per epoch; a loser syncs (which applies
//! the winner's commit) and tries again. Only after the hub accepted a commit
//! does the device merge it, so a refused commit leaves no trace.
//!
//! Who is added is decided here, never by the server: a user's devices are
//! added only if a verified lookup shows them approved by that user, and
//! not while that user's identity changed unverified; devices revoked since
//! are removed (by every member that notices: removing is always safe).

use crate::alert::AlertKind;
use crate::client::Client;
use crate::engine::ceiling::{Ceiling, new_policy};
use crate::engine::identity::Proven;
use crate::engine::membership::Change;
use crate::error::{ClientError, Result};
use crate::failpoint::failpoint;
use crate::mls;
use openmls::prelude::KeyPackage;
use reqwest::Method;
use std::collections::{BTreeMap, BTreeSet};
use std::time::Instant;
use valise_proto::api::{ClaimRequest, ClaimResponse, ConversationState};
use valise_proto::{ConversationId, DeviceAddress, ErrorCode, Label, Payload, UserId};

/// How often a commit is retried after losing a race for the epoch.
const COMMIT_ATTEMPTS: usize = 5;

impl Client {
    /// Creates a conversation with these people (all their approved
    /// devices) and returns its id. With a `ceiling`, every device must be
    /// accredited for it, and the conversation keeps it for good.
    pub async fn create_conversation(
        &mut self,
        name: &str,
        members: &[UserId],
        ceiling: Option<Label>,
    ) -> Result<ConversationId> {
        self.create(name, members, false, ceiling).await
    }

    pub(crate) async fn create(
        &mut self,
        name: &str,
        members: &[UserId],
        direct: bool,
        ceiling: Option<Label>,
    ) -> Result<ConversationId> {
        self.check_may_write(members)?;
        if let Some(ceiling) = &ceiling {
            let mut users = members.to_vec();
            users.push(self.engine.me.user.clone());
            self.refuse_unaccredited(&users, ceiling).await?;
        }
        // Claim first: a person who cannot be added leaves no empty
        // conversation. This user's other approved devices join too.
        let present = BTreeSet::from([self.engine.me.clone()]);
        let mut packages = self.claim_each(members, &present).await?;
        let me = self.engine.me.user.clone();
        packages.extend(
            self.claim(std::slice::from_ref(&me), &present, true)
                .await?,
        );
        let policy = ceiling.map(new_policy);
        let id = ConversationId::from_bytes(rand::random());
        let request = self
            .engine
            .create_group(&id, name, direct, policy.as_ref())?;
        let _: ConversationState = self
            .call(Method::POST, "/v1/conversations", Some(&request))
            .await?;
        self.commit(&id, |_| {
            Ok(Change {
                adds: packages.clone(),
                ..Change::default()
            })
        })
        .await?;
        self.send_meta(&id).await?;
        Ok(id)
    }

    /// Adds a person (all their approved devices) to a conversation; each
    /// device must be accredited for its ceiling.
    pub async fn add_member(&mut self, conv: &ConversationId, user: &UserId) -> Result<()> {
        self.check_may_write(std::slice::from_ref(user))?;
        self.pull(0).await?;
        let present = self.engine.roster(conv)?;
        if present.iter().any(|d| &d.user == user) {
            return Err(ClientError::Invalid(format!(
                "{user} is already a member of {conv}"
            )));
        }
        if let Ceiling::Known(ceiling) = self.engine.ceiling(conv)?
            && !crate::failpoint::modified("skip_marking_check")
        {
            self.refuse_unaccredited(std::slice::from_ref(user), &ceiling)
                .await?;
        }
        let packages = self
            .claim_each(std::slice::from_ref(user), &present)
            .await?;
        self.commit(conv, |_| {
            Ok(Change {
                adds: packages.clone(),
                ..Change::default()
            })
        })
        .await?;
        self.send_meta(conv).await
    }

    /// Removes a person (all their devices) from a conversation.
    pub async fn remove_member(&mut self, conv: &ConversationId, user: &UserId) -> Result<()> {
        if user == &self.engine.me.user {
            return Err(ClientError::Invalid(
                "removing yourself is not supported yet".into(),
            ));
        }
        let user = user.clone();
        self.commit(conv, |roster| {
            let removes: BTreeSet<DeviceAddress> =
                roster.iter().filter(|d| d.user == user).cloned().collect();
            if removes.is_empty() {
                return Err(ClientError::NotFound {
                    kind: "member",
                    id: user.to_string(),
                });
            }
            Ok(Change {
                removes,
                ..Change::default()
            })
        })
        .await
    }

    /// Checks the members of the conversations whose members or ceiling
    /// changed against the ceiling, their users' entries read afresh: a
    /// device not accredited degrades the conversation (and alerts).
    pub(crate) async fn check_ceilings(&mut self) -> Result<()> {
        for conv in self.engine.due_roster_checks() {
            if !matches!(self.engine.ceiling(&conv)?, Ceiling::Known(_)) {
                continue;
            }
            let users: BTreeSet<UserId> = self
                .engine
                .roster(&conv)?
                .into_iter()
                .map(|d| d.user)
                .collect();
            for user in &users {
                match self.prove_user(user).await {
                    Err(e) if e.is_transient() => return Err(e),
                    // Refused (and alerted inside): its devices count as
                    // not accredited below.
                    Err(e) => tracing::warn!(%user, error = %e, "entry not proven"),
                    Ok(_) => {}
                }
            }
            self.engine.check_roster(&conv)?;
        }
        Ok(())
    }

    /// Refuses people any of whose approved devices is not accredited for
    /// `ceiling` (naming the first), their entries read afresh from the
    /// directory; before any key package is claimed.
    async fn refuse_unaccredited(&mut self, users: &[UserId], ceiling: &Label) -> Result<()> {
        let mut devices = Vec::new();
        for user in users {
            let proven = self.prove_user(user).await?;
            devices.extend(
                proven
                    .devices
                    .devices
                    .iter()
                    .filter(|(_, (_, status))| status.is_approved())
                    .map(|(id, _)| DeviceAddress::new(user.clone(), *id)),
            );
        }
        match self.engine.unaccredited(&devices, ceiling)? {
            None => Ok(()),
            Some((device, lack)) => Err(ClientError::Handling {
                code: "not_accredited",
                detail: format!(
                    "device {device} {}, so it is not accredited for the ceiling {}: not added",
                    lack.describe(),
                    ceiling.marking().entry().short
                ),
            }),
        }
    }

    /// Refuses to write to people whose identity changed unverified.
    fn check_may_write(&self, users: &[UserId]) -> Result<()> {
        for user in users {
            if !self.engine.may_write_to(user)? {
                return Err(ClientError::IdentityChanged(user.to_string()));
            }
        }
        Ok(())
    }

    /// Brings a conversation's devices in line with the directory before
    /// this device writes there: members' devices approved since are added
    /// (their users' identities permitting), revoked ones removed. Returns
    /// (added, removed).
    pub(crate) async fn refresh_members(
        &mut self,
        conv: &ConversationId,
        proven: &mut BTreeMap<UserId, Proven>,
    ) -> Result<(usize, usize)> {
        let roster = self.engine.roster(conv)?;
        let users: BTreeSet<UserId> = roster.iter().map(|d| d.user.clone()).collect();
        let mut missing = Vec::new();
        let mut revoked = BTreeSet::new();
        for user in &users {
            if !proven.contains_key(user) {
                let p = self.prove_user(user).await?;
                proven.insert(user.clone(), p);
            }
            let Some(p) = proven.get(user) else { continue };
            let writable = self.engine.may_write_to(user)?;
            for (device, (entry, status)) in &p.devices.devices {
                let address = DeviceAddress::new(user.clone(), *device);
                if !roster.contains(&address) && status.is_approved() && writable {
                    missing.push((address, entry.signature_key.0.clone()));
                }
            }
            // Members no longer approved (revoked, or never): removed.
            for d in roster
                .iter()
                .filter(|d| &d.user == user && **d != self.engine.me)
            {
                if p.devices.approved_key(&d.device).is_none() {
                    revoked.insert(d.clone());
                }
            }
        }
        if missing.is_empty() && revoked.is_empty() {
            self.members_checked.insert(*conv, Instant::now());
            return Ok((0, 0));
        }
        let needing: Vec<UserId> = missing
            .iter()
            .map(|(d, _)| d.user.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let packages = self.claim(&needing, &roster, true).await?;
        let added = packages.len();
        let removed = revoked.len();
        self.commit(conv, |roster| {
            Ok(Change {
                adds: packages.clone(),
                removes: revoked.intersection(roster).cloned().collect(),
                ..Change::default()
            })
        })
        .await?;
        self.members_checked.insert(*conv, Instant::now());
        if added > 0 {
            self.send_meta(conv).await?;
        }
        Ok((added, removed))
    }

    /// Checks a conversation's members against the directory before this
    /// device seals into it, unless it did so lately (see
    /// `Client::members_checked`) or the conversation is out of step.
    pub(crate) async fn check_members(&mut self, conv: &ConversationId) -> Result<()> {
        let fresh = self
            .members_checked
            .get(conv)
            .is_some_and(|t| t.elapsed() < crate::sync::HOUSEKEEPING_EVERY);
        let ready = self
            .engine
            .home
            .conversation(conv)?
            .is_some_and(|c| c.active && !c.diverged);
        if ready && !fresh {
            self.refresh_members(conv, &mut BTreeMap::new()).await?;
        }
        Ok(())
    }

    /// The user's own conversations, brought in line with the directory on
    /// each housekeeping: this user's devices approved since are added, and
    /// revoked devices of anyone removed. Returns (added, removed).
    pub(crate) async fn refresh_own_conversations(&mut self) -> Result<(usize, usize)> {
        let me = self.engine.me.user.clone();
        let mut proven = match self.prove_user(&me).await {
            Ok(p) => BTreeMap::from([(me.clone(), p)]),
            // This user's entry was refused (and alerted): nothing is
            // added or removed on the server's word until it is whole.
            Err(e @ ClientError::NotInDirectory(_)) => {
                tracing::warn!(error = %e, "own entry refused; conversations left as they are");
                return Ok((0, 0));
            }
            Err(e) => return Err(e),
        };
        if !self.own_device_approved()? || !self.engine.may_write_to(&me)? {
            return Ok((0, 0));
        }
        let (mut added, mut removed) = (0, 0);
        for conv in self.engine.home.active_conversations()? {
            if self
                .engine
                .home
                .conversation(&conv)?
                .is_some_and(|c| c.diverged)
            {
                continue;
            }
            match self.refresh_members(&conv, &mut proven).await {
                Ok((a, r)) => {
                    added += a;
                    removed += r;
                }
                // One conversation must not stop the others (a key the
                // directory does not hold is alerted inside).
                Err(e @ (ClientError::NotInDirectory(_) | ClientError::Server(_))) => {
                    tracing::warn!(conversation = %conv, error = %e, "members not refreshed");
                }
                Err(e) => return Err(e),
            }
        }
        Ok((added, removed))
    }

    /// Renews this device's own leaf where it is due (every
    /// `update_interval` at least, and at once after a fork, a rollback, a
    /// revocation or another member's rejoin): healing, I3.
    pub(crate) async fn renew_leaves(&mut self) -> Result<usize> {
        let older_than = self.engine.now_ms() - self.update_interval_ms;
        let mut renewed = 0;
        for conv in self.engine.home.updates_due(older_than)? {
            match self
                .commit(&conv, |_| {
                    Ok(Change {
                        update: true,
                        ..Change::default()
                    })
                })
                .await
            {
                Ok(()) => renewed += 1,
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => tracing::warn!(conversation = %conv, error = %e, "keys not renewed"),
            }
        }
        Ok(renewed)
    }

    /// As [`Client::claim`], but each of these users must bring at least
    /// one device: nobody named is silently left out.
    async fn claim_each(
        &mut self,
        users: &[UserId],
        present: &BTreeSet<DeviceAddress>,
    ) -> Result<Vec<KeyPackage>> {
        let mut all = Vec::new();
        for user in users {
            let packages = self
                .claim(std::slice::from_ref(user), present, false)
                .await?;
            if packages.is_empty() {
                return Err(ClientError::NoDevices(user.to_string()));
            }
            all.extend(packages);
        }
        Ok(all)
    }

    /// Claims and verifies one key package per approved device of these
    /// users that is not `present`. Packages of pending or revoked devices
    /// are skipped; a key the directory does not hold raises an alert (A3)
    /// and fails the claim, unless `lenient` (adding devices to existing
    /// conversations: the others still go).
    async fn claim(
        &mut self,
        users: &[UserId],
        present: &BTreeSet<DeviceAddress>,
        lenient: bool,
    ) -> Result<Vec<KeyPackage>> {
        let mut packages = Vec::new();
        for user in users {
            // This user's own devices, only while this device counts for an
            // identity that did not change under it.
            if user == &self.engine.me.user
                && (!self.own_device_approved()? || !self.engine.may_write_to(user)?)
            {
                continue;
            }
            let exclude = present
                .iter()
                .filter(|d| &d.user == user)
                .map(|d| d.device)
                .collect::<Vec<_>>();
            let path = format!("/v1/users/{user}/key-packages/claim");
            let request = ClaimRequest {
                exclude: exclude.clone(),
            };
            let claim: ClaimResponse = match self.call(Method::POST, &path, Some(&request)).await {
                Err(e) if e.is_server(ErrorCode::NoKeyPackage) => continue,
                other => other?,
            };
            let proven = self.prove_user(user).await?;
            for kp in claim.key_packages {
                let device = DeviceAddress::new(user.clone(), kp.device);
                if device == self.engine.me {
                    continue;
                }
                let checked = mls::verify_key_package(
                    &self.engine.provider(),
                    kp.key_package.as_slice(),
                    &device,
                    self.engine.clock.now_s(),
                );
                let listed = proven.devices.devices.get(&kp.device);
                let refusal = match (&checked, listed) {
                    (Err(e), _) => Some(format!(
                        "the server offered an invalid key package for {device}: {e}"
                    )),
                    (Ok(package), Some((entry, status)))
                        if entry.signature_key.as_bytes()
                            == package.leaf_node().signature_key().as_slice() =>
                    {
                        // Published with this key, but not approved by its
                        // user: skipped, as nobody adds such a device.
                        if !status.is_approved() {
                            tracing::info!(%device, status = status.as_str(), "device skipped");
                            continue;
                        }
                        None
                    }
                    (Ok(_), _) => Some(format!(
                        "the server offered a key for {device} that the key directory does not hold"
                    )),
                };
                if let Some(detail) = refusal {
                    self.engine.raise(
                        AlertKind::KeyNotInDirectory,
                        None,
                        &detail,
                        Some(kp.key_package.as_slice()),
                    )?;
                    if lenient {
                        continue;
                    }
                    return Err(ClientError::NotInDirectory(detail));
                }
                packages.extend(checked.ok());
            }
        }
        Ok(packages)
    }

    /// Builds a commit at the current epoch from the current roster,
    /// submits it to the hub, and merges it once accepted; on a lost race,
    /// catches up and rebuilds.
    pub(crate) async fn commit(
        &mut self,
        conv: &ConversationId,
        mut build: impl FnMut(&BTreeSet<DeviceAddress>) -> Result<Change>,
    ) -> Result<()> {
        // Settle any commit left unconfirmed by an earlier crash first.
        self.pull(0).await?;
        for _ in 0..COMMIT_ATTEMPTS {
            if self
                .engine
                .home
                .conversation(conv)?
                .is_some_and(|c| c.diverged)
            {
                return Err(ClientError::Diverged(conv.to_string()));
            }
            let roster = self.engine.roster(conv)?;
            let change = build(&roster)?.against(&roster);
            if change.is_empty() {
                return Ok(());
            }
            let submit = self.engine.stage(conv, change)?;
            failpoint("commit-before-send");
            let path = format!("/v1/conversations/{conv}/commits");
            let outcome: Result<ConversationState> =
                self.call(Method::POST, &path, Some(&submit)).await;
            match outcome {
                Ok(_) => {
                    failpoint("commit-after-accept");
                    // Merge in inbox order: letters others sent in this epoch
                    // before the hub took the commit come first, then its
                    // echo merges it. Merging at once would leave them behind.
                    self.pull(0).await?;
                    failpoint("commit-after-merge");
                    return Ok(());
                }
                // Unknown whether the hub took it: the next sync tells
                // (the hub echoes accepted commits to their committer).
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    self.engine.settle_pending(conv, false)?;
                    if !e.is_server(ErrorCode::StaleEpoch) {
                        return Err(e);
                    }
                }
            }
            self.pull(0).await?;
        }
        Err(ClientError::Contention)
    }

    /// Tells the members the conversation's settings (after it changed),
    /// inside the encryption.
    pub(crate) async fn send_meta(&mut self, conv: &ConversationId) -> Result<()> {
        let meta = self.engine.meta(conv)?;
        let id = self.engine.write_payload(conv, &Payload::Meta(meta))?;
        match self.deliver(id).await {
            // The change itself went through; its settings follow once the
            // conversation is whole again.
            Err(ClientError::Held(why)) => {
                tracing::info!(conversation = %conv, why, "settings wait in the outbox");
                Ok(())
            }
            other => other,
        }
    }

    /// Whether this device counts for its user (founded the identity or was
    /// approved), as the directory last showed it.
    pub(crate) fn own_device_approved(&self) -> Result<bool> {
        let me = &self.engine.me;
        Ok(self
            .engine
            .doubt(me, self.engine.signer.public())?
            .is_none())
    }
}
