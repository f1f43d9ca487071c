//! Conversations and their members, as this device's MLS groups hold them:
//! creating one, staging the commits that change who is in it, and what
//! `conversation list` shows.
//!
//! A commit is staged (pending) until the hub accepts it; the hub's echo
//! merges it in inbox order, and a commit still pending once the whole inbox
//! was read was never accepted and is discarded. A refused commit leaves no
//! trace.

use super::Engine;
use crate::error::{ClientError, Result};
use crate::mls;
use openmls::prelude::*;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use valise_proto::api::{CreateConversation, SubmitCommit};
use valise_proto::{ConversationId, ConversationMeta, DeviceAddress, PolicyRecord, UserId};

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
    /// This device does not follow the hub's group state (a fork, a commit
    /// it could not process, or a state it refused): nothing is sealed
    /// there until a sync rejoins or the person accepts the hub's state.
    pub diverged: bool,
    /// The ceiling this device holds, as users write it (`None`: no
    /// ceiling; see `ceiling_known`).
    pub ceiling: Option<String>,
    /// False while the group holds a policy whose record has not arrived.
    pub ceiling_known: bool,
    /// Why marked letters are refused here, if they are.
    pub degraded: Option<String>,
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

/// What a commit changes.
#[derive(Default)]
pub struct Change {
    /// Key packages of the devices to add (verified and approved).
    pub adds: Vec<KeyPackage>,
    /// Devices to remove.
    pub removes: BTreeSet<DeviceAddress>,
    /// Also renew this device's own leaf (every commit with a path does;
    /// an empty change with this set is a pure update).
    pub update: bool,
}

impl Change {
    /// Keeps only what `roster` still needs: devices added meanwhile (a
    /// race) are not added twice, devices gone are not removed again.
    pub fn against(mut self, roster: &BTreeSet<DeviceAddress>) -> Self {
        self.adds.retain(|kp| {
            mls::device_of(kp.leaf_node().credential()).is_ok_and(|d| !roster.contains(&d))
        });
        self.removes.retain(|d| roster.contains(d));
        self
    }

    /// Nothing to commit.
    pub fn is_empty(&self) -> bool {
        self.adds.is_empty() && self.removes.is_empty() && !self.update
    }
}

impl Engine {
    /// Creates a conversation with this device alone at epoch 0, and the
    /// hub's request to register it. With a `policy`, the group context
    /// holds its salted hash from epoch 0 ([`super::ceiling`]).
    pub fn create_group(
        &self,
        id: &ConversationId,
        name: &str,
        direct: bool,
        policy: Option<&PolicyRecord>,
    ) -> Result<CreateConversation> {
        let config = mls::create_config(super::ceiling::policy_hash(policy)?)?;
        self.transaction(|| {
            let p = self.provider();
            let group = MlsGroup::new_with_group_id(
                &p,
                &self.signer,
                &config,
                mls::group_id(id),
                mls::credential(&self.me, &self.signer),
            )
            .map_err(ClientError::mls)?;
            let info = group
                .export_group_info(p.crypto(), &self.signer, false)
                .map_err(ClientError::mls)?;
            self.home
                .put_conversation(id, name, direct, 0, self.now_ms())?;
            self.home.set_members_key(id, &mls::members_key(&group)?)?;
            if let Some(record) = policy {
                let bytes = record
                    .encode()
                    .map_err(|e| ClientError::Invalid(e.to_string()))?;
                self.home.set_policy(id, &bytes)?;
            }
            Ok(CreateConversation {
                id: *id,
                group_info: mls::serialize(&info)?.into(),
                ratchet_tree: mls::serialize(&group.export_ratchet_tree())?.into(),
            })
        })
    }

    /// Stages a commit at the current epoch (pending until the hub answers)
    /// and returns the hub's request. The commit carries this device's
    /// newest directory root in its authenticated data.
    pub fn stage(&self, conv: &ConversationId, change: Change) -> Result<SubmitCommit> {
        let stamp = self.root_stamp()?;
        self.transaction(|| {
            let submit = self.with_group(conv, |group, p| {
                let removes = mls::roster(group)?
                    .into_iter()
                    .filter(|(_, d)| change.removes.contains(d))
                    .map(|(i, _)| i)
                    .collect();
                let epoch = group.epoch().as_u64();
                group.set_aad(stamp.clone());
                let staged = mls::stage_commit(
                    group,
                    p,
                    &self.signer,
                    change.adds.clone(),
                    removes,
                    change.update,
                );
                group.set_aad(Vec::new());
                Ok(staged?.submit(epoch))
            })?;
            self.home.mark_pending_commit(conv, true)?;
            Ok(submit)
        })
    }

    /// Merges (`accepted`) or discards this device's pending commit.
    pub fn settle_pending(&self, conv: &ConversationId, accepted: bool) -> Result<()> {
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
            self.home.mark_pending_commit(conv, false)
        })
    }

    /// What only the end of a read of the whole inbox settles: a commit
    /// still pending was never accepted (the hub queues the echo with the
    /// acceptance): discarded; letters still held wait for a withheld
    /// commit: alerted ([`super::held`]).
    pub fn whole_inbox_read(&self) -> Result<()> {
        for conv in self.home.pending_commits()? {
            self.settle_pending(&conv, false)?;
        }
        self.alert_still_held()
    }

    /// The devices in a conversation, from its MLS roster.
    pub fn roster(&self, conv: &ConversationId) -> Result<BTreeSet<DeviceAddress>> {
        self.with_group(conv, |group, _| {
            Ok(mls::roster(group)?.into_iter().map(|(_, d)| d).collect())
        })
    }

    /// The other users of a conversation.
    pub fn other_members(&self, conv: &ConversationId) -> Result<Vec<UserId>> {
        let users: BTreeSet<UserId> = self
            .roster(conv)?
            .into_iter()
            .map(|d| d.user)
            .filter(|u| u != &self.me.user)
            .collect();
        Ok(users.into_iter().collect())
    }

    /// The conversation `send --to` reuses for exactly these people: one it
    /// made that way, whose current MLS roster holds exactly them and this
    /// user.
    pub fn direct_conversation(&self, people: &[UserId]) -> Result<Option<ConversationId>> {
        let key = mls::users_key(people.iter().chain([&self.me.user]));
        for conv in self.home.direct_conversations(&key)? {
            // The kept key follows the group; the group itself decides.
            let users: BTreeSet<UserId> = self.roster(&conv)?.into_iter().map(|d| d.user).collect();
            if mls::users_key(users.iter()) == key {
                return Ok(Some(conv));
            }
        }
        Ok(None)
    }

    /// The settings a member sends when the conversation changes.
    pub fn meta(&self, conv: &ConversationId) -> Result<ConversationMeta> {
        let row = self
            .home
            .conversation(conv)?
            .ok_or_else(|| ClientError::NotFound {
                kind: "conversation",
                id: conv.to_string(),
            })?;
        let policy = row
            .policy
            .map(|bytes| PolicyRecord::decode(&bytes))
            .transpose()
            .map_err(|e| ClientError::Home(format!("stored policy record: {e}")))?;
        Ok(ConversationMeta {
            name: row.name,
            direct: row.direct,
            policy,
        })
    }

    /// Conversations this device is (or was) a member of.
    pub fn conversations(&self) -> Result<Vec<ConversationView>> {
        self.home
            .conversations()?
            .into_iter()
            .map(|row| {
                self.with_group(&row.id, |group, _| {
                    let mut members: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
                    for (_, d) in mls::roster(group)? {
                        members
                            .entry(d.user)
                            .or_default()
                            .push(d.device.to_string());
                    }
                    Ok(ConversationView {
                        id: row.id,
                        name: row.name.clone(),
                        epoch: group.epoch().as_u64(),
                        ciphersuite: format!("{:?}", group.ciphersuite()),
                        active: row.active && group.is_active(),
                        authenticator: hex::encode(group.epoch_authenticator().as_slice()),
                        members,
                        diverged: row.diverged,
                        ceiling: None,
                        ceiling_known: true,
                        degraded: row.degraded.clone(),
                    })
                })
                .and_then(|mut view| {
                    match self.ceiling(&view.id)? {
                        super::ceiling::Ceiling::Known(c) => view.ceiling = Some(c.to_string()),
                        super::ceiling::Ceiling::Unknown => view.ceiling_known = false,
                        super::ceiling::Ceiling::None => {}
                    }
                    Ok(view)
                })
            })
            .collect()
    }
}
