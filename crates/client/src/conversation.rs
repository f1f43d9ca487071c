//! Conversations: one MLS group each, every device of every member a leaf.
//!
//! Membership changes are commits submitted to the hub for the current
//! epoch. The hub accepts one commit per epoch; a loser syncs (which applies
//! the winner's commit) and tries again. Only after the hub accepted a commit
//! does the device merge it, so a refused commit leaves no trace.

use crate::alert::AlertKind;
use crate::client::{Client, now_ms};
use crate::error::{ClientError, Result};
use crate::failpoint::failpoint;
use crate::mls;
use crate::provider::Provider;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use reqwest::Method;
use rusqlite::{OptionalExtension, params};
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use valise_proto::api::{
    ClaimRequest, ClaimResponse, ConversationState, CreateConversation, DeviceList,
};
use valise_proto::{ConversationId, ConversationMeta, DeviceAddress, ErrorCode, Payload, UserId};

/// How often a commit is retried after losing a race for the epoch.
const COMMIT_ATTEMPTS: usize = 5;

/// A conversation as this device sees it. Its name is content: Debug omits it.
#[derive(Clone, Serialize)]
pub struct ConversationView {
    pub id: ConversationId,
    pub name: String,
    pub epoch: u64,
    /// IANA name of the MLS ciphersuite.
    pub ciphersuite: String,
    pub active: bool,
    /// The MLS epoch authenticator (hex): equal on every member's device
    /// exactly when they share the same group state (no fork).
    pub authenticator: String,
    /// Members and their devices, from the MLS roster.
    pub members: BTreeMap<UserId, Vec<String>>,
    /// This device may not follow the hub's group state (a fork, or a
    /// commit it could not process) until its next sync rejoins.
    pub diverged: bool,
}

impl std::fmt::Debug for ConversationView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConversationView")
            .field("id", &self.id)
            .field("epoch", &self.epoch)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Client {
    /// Creates a conversation with these people (all their devices) and
    /// returns its id.
    pub async fn create_conversation(
        &mut self,
        name: &str,
        members: &[UserId],
    ) -> Result<ConversationId> {
        self.create(name, members, false).await
    }

    pub(crate) async fn create(
        &mut self,
        name: &str,
        members: &[UserId],
        direct: bool,
    ) -> Result<ConversationId> {
        // Claim first: a person who cannot be added leaves no empty conversation.
        let present = BTreeSet::from([self.me.clone()]);
        let packages = self.claim(members, &present).await?;
        let id = ConversationId::from_bytes(rand::random());
        let request = self.transaction(|| {
            let p = self.provider();
            let group = MlsGroup::new_with_group_id(
                &p,
                &self.signer,
                &mls::create_config(),
                mls::group_id(&id),
                mls::credential(&self.me, &self.signer),
            )
            .map_err(ClientError::mls)?;
            let info = group
                .export_group_info(p.crypto(), &self.signer, false)
                .map_err(ClientError::mls)?;
            self.home.conn.execute(
                "INSERT INTO conversations (id, name, created_at_ms) VALUES (?1, ?2, ?3)",
                params![id.to_string(), name, now_ms()],
            )?;
            Ok(CreateConversation {
                id,
                group_info: mls::serialize(&info)?.into(),
                ratchet_tree: mls::serialize(&group.export_ratchet_tree())?.into(),
            })
        })?;
        let _: ConversationState = self
            .call(Method::POST, "/v1/conversations", Some(&request))
            .await?;
        self.add_packages(&id, packages).await?;
        if direct {
            self.set_direct_key(&id)?;
        }
        let meta = ConversationMeta {
            name: name.to_owned(),
            direct,
        };
        self.send_payload(&id, &Payload::Meta(meta)).await?;
        Ok(id)
    }

    /// Adds a person (all their devices) to a conversation.
    pub async fn add_member(&mut self, conv: &ConversationId, user: &UserId) -> Result<()> {
        self.add_users(conv, std::slice::from_ref(user)).await?;
        let meta = self.meta(conv)?;
        self.send_payload(conv, &Payload::Meta(meta)).await
    }

    /// Removes a person (all their devices) from a conversation.
    pub async fn remove_member(&mut self, conv: &ConversationId, user: &UserId) -> Result<()> {
        if user == &self.me.user {
            return Err(ClientError::Invalid(
                "removing yourself is not supported yet".into(),
            ));
        }
        let user = user.clone();
        self.commit(conv, move |group, p, signer| {
            let leaves: Vec<LeafNodeIndex> = mls::roster(group)?
                .into_iter()
                .filter(|(_, d)| d.user == user)
                .map(|(i, _)| i)
                .collect();
            if leaves.is_empty() {
                return Err(ClientError::NotFound {
                    kind: "member",
                    id: user.to_string(),
                });
            }
            mls::stage_commit(group, p, signer, Vec::new(), leaves)
        })
        .await
    }

    /// Adds every device of these users that the group lacks. Users whose
    /// devices are all present already are skipped.
    pub(crate) async fn add_users(
        &mut self,
        conv: &ConversationId,
        users: &[UserId],
    ) -> Result<()> {
        // The roster decides whose devices to claim: read the inbox first,
        // or a person removed meanwhile still counts as present and
        // nothing would be added (found by the random driver, E2).
        self.pull(0).await?;
        let present = self.roster(conv)?;
        let packages = self.claim(users, &present).await?;
        self.add_packages(conv, packages).await
    }

    /// Claims and verifies one key package per device of these users that
    /// is not `present`.
    async fn claim(
        &mut self,
        users: &[UserId],
        present: &BTreeSet<DeviceAddress>,
    ) -> Result<Vec<KeyPackage>> {
        let mut packages = Vec::new();
        for user in users {
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
                Err(e) if e.is_server(ErrorCode::NoKeyPackage) && !exclude.is_empty() => continue,
                Err(e) if e.is_server(ErrorCode::NoKeyPackage) => {
                    return Err(ClientError::NoDevices(user.to_string()));
                }
                other => other?,
            };
            // Only keys the directory proves are used (A3: key substitution).
            let proven = self.prove_user(user).await?;
            for kp in claim.key_packages {
                let device = DeviceAddress::new(user.clone(), kp.device);
                let checked =
                    mls::verify_key_package(&self.provider(), kp.key_package.as_slice(), &device);
                let refusal = match &checked {
                    Err(e) => Some(format!(
                        "the server offered an invalid key package for {device}: {e}"
                    )),
                    Ok(package) => {
                        let key = package.leaf_node().signature_key().as_slice();
                        (proven.active_key(&kp.device) != Some(key)).then(|| {
                            format!("the server offered a key for {device} that the key directory does not hold")
                        })
                    }
                };
                if let Some(detail) = refusal {
                    self.raise(
                        AlertKind::KeyNotInDirectory,
                        None,
                        &detail,
                        Some(kp.key_package.as_slice()),
                    )?;
                    return Err(ClientError::NotInDirectory(detail));
                }
                packages.extend(checked.ok());
            }
        }
        Ok(packages)
    }

    async fn add_packages(
        &mut self,
        conv: &ConversationId,
        packages: Vec<KeyPackage>,
    ) -> Result<()> {
        if packages.is_empty() {
            return Ok(());
        }
        self.commit(conv, move |group, p, signer| {
            mls::stage_commit(group, p, signer, packages.clone(), Vec::new())
        })
        .await
    }

    /// Builds a commit at the current epoch, submits it to the hub, and
    /// merges it once accepted; on a lost race, catches up and rebuilds.
    async fn commit<F>(&mut self, conv: &ConversationId, mut build: F) -> Result<()>
    where
        F: FnMut(&mut MlsGroup, &Provider<'_>, &SignatureKeyPair) -> Result<mls::StagedCommit>,
    {
        // Settle any commit left unconfirmed by an earlier crash first.
        self.pull(0).await?;
        for _ in 0..COMMIT_ATTEMPTS {
            let submit = self.transaction(|| {
                let submit = self.with_group(conv, |group, p| {
                    let epoch = group.epoch().as_u64();
                    Ok(build(group, p, &self.signer)?.submit(epoch))
                })?;
                self.mark_pending(conv, true)?;
                Ok(submit)
            })?;
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
                    self.settle_pending(conv, false)?;
                    if !e.is_server(ErrorCode::StaleEpoch) {
                        return Err(e);
                    }
                }
            }
            self.pull(0).await?;
        }
        Err(ClientError::Contention)
    }

    /// Merges (`accepted`) or discards this device's pending commit.
    pub(crate) fn settle_pending(&self, conv: &ConversationId, accepted: bool) -> Result<()> {
        self.transaction(|| {
            self.with_group(conv, |group, p| {
                if accepted {
                    group.merge_pending_commit(p).map_err(ClientError::mls)
                } else {
                    group
                        .clear_pending_commit(p.storage())
                        .map_err(ClientError::mls)
                }
            })?;
            self.mark_pending(conv, false)
        })
    }

    /// Remembers which conversations hold a commit the hub has not confirmed.
    pub(crate) fn mark_pending(&self, conv: &ConversationId, pending: bool) -> Result<()> {
        let sql = if pending {
            "INSERT OR IGNORE INTO pending_commits (conversation) VALUES (?1)"
        } else {
            "DELETE FROM pending_commits WHERE conversation = ?1"
        };
        self.home.conn.execute(sql, [conv.to_string()])?;
        Ok(())
    }

    /// After the whole inbox was read, a commit still pending was never
    /// accepted (the hub queues the echo with the acceptance): discard it.
    pub(crate) fn discard_unconfirmed_commits(&self) -> Result<()> {
        let pending: Vec<String> = {
            let mut stmt = self
                .home
                .conn
                .prepare("SELECT conversation FROM pending_commits")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        for conv in pending {
            self.settle_pending(&ConversationId::parse(&conv)?, false)?;
        }
        Ok(())
    }

    /// Adds this user's devices that joined after the conversation was made:
    /// another device of the same user does it on its next sync.
    pub(crate) async fn add_own_new_devices(&mut self) -> Result<usize> {
        let path = format!("/v1/users/{}/devices", self.me.user);
        let mine: DeviceList = self.call::<(), _>(Method::GET, &path, None).await?;
        let mine: BTreeSet<DeviceAddress> = mine
            .devices
            .into_iter()
            .map(|d| DeviceAddress::new(self.me.user.clone(), d.device))
            .collect();
        let mut added = 0;
        for conv in self.active_conversations()? {
            let missing = mine.difference(&self.roster(&conv)?).count();
            if missing > 0 {
                let me = self.me.user.clone();
                self.add_users(&conv, std::slice::from_ref(&me)).await?;
                let meta = self.meta(&conv)?;
                self.send_payload(&conv, &Payload::Meta(meta)).await?;
                added += missing;
            }
        }
        Ok(added)
    }

    /// Conversations this device is a member of.
    pub fn conversations(&self) -> Result<Vec<ConversationView>> {
        let rows = {
            let mut stmt = self.home.conn.prepare(
                "SELECT id, name, active, diverged FROM conversations ORDER BY created_at_ms",
            )?;
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, bool>(2)?,
                    r.get::<_, bool>(3)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?
        };
        let mut out = Vec::new();
        for (id, name, active, diverged) in rows {
            let id = ConversationId::parse(&id)?;
            out.push(self.with_group(&id, |group, _| {
                let mut members: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
                for (_, d) in mls::roster(group)? {
                    members
                        .entry(d.user)
                        .or_default()
                        .push(d.device.to_string());
                }
                Ok(ConversationView {
                    id,
                    name,
                    epoch: group.epoch().as_u64(),
                    ciphersuite: format!("{:?}", group.ciphersuite()),
                    active: active && group.is_active(),
                    authenticator: hex::encode(group.epoch_authenticator().as_slice()),
                    members,
                    diverged,
                })
            })?);
        }
        Ok(out)
    }

    /// The devices in a conversation, from its MLS roster.
    pub(crate) fn roster(&self, conv: &ConversationId) -> Result<BTreeSet<DeviceAddress>> {
        self.with_group(conv, |group, _| {
            Ok(mls::roster(group)?.into_iter().map(|(_, d)| d).collect())
        })
    }

    pub(crate) fn active_conversations(&self) -> Result<Vec<ConversationId>> {
        let mut stmt = self
            .home
            .conn
            .prepare("SELECT id FROM conversations WHERE active = 1")?;
        let ids = stmt
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        ids.iter().map(|s| Ok(ConversationId::parse(s)?)).collect()
    }

    /// The conversation `send --to` reuses for exactly these people.
    pub(crate) fn direct_conversation(&self, people: &[UserId]) -> Result<Option<ConversationId>> {
        let key = direct_key(people.iter().chain([&self.me.user]));
        let id: Option<String> = self
            .home
            .conn
            .query_row(
                "SELECT id FROM conversations WHERE direct_key = ?1 AND active = 1",
                [key],
                |r| r.get(0),
            )
            .optional()?;
        id.map(|s| Ok(ConversationId::parse(&s)?)).transpose()
    }

    /// Marks a conversation as the direct one for its current members.
    pub(crate) fn set_direct_key(&self, conv: &ConversationId) -> Result<()> {
        let roster = self.roster(conv)?;
        let key = direct_key(roster.iter().map(|d| &d.user));
        // Another conversation may hold the key already; the older one stays.
        self.home.conn.execute(
            "UPDATE conversations SET direct_key = ?1 WHERE id = ?2
             AND NOT EXISTS (SELECT 1 FROM conversations WHERE direct_key = ?1)",
            params![key, conv.to_string()],
        )?;
        Ok(())
    }

    fn meta(&self, conv: &ConversationId) -> Result<ConversationMeta> {
        let (name, direct): (String, bool) = self.home.conn.query_row(
            "SELECT name, direct_key IS NOT NULL FROM conversations WHERE id = ?1",
            [conv.to_string()],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )?;
        Ok(ConversationMeta { name, direct })
    }
}

fn direct_key<'a>(users: impl Iterator<Item = &'a UserId>) -> String {
    let set: BTreeSet<&str> = users.map(|u| u.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}
