//! Falling out of step with the hub, and the only ways back in.
//!
//! A device is out of step (`diverged`) after a fork (another commit for an
//! epoch it already left) or a commit the hub took that it cannot process
//! (a member's malformed commit, a corrupted one). It then follows the
//! hub's side *publicly*: from the last epoch it shared with the hub, it
//! applies the commits it is delivered to a public copy of the group (the
//! **shadow**), checking what the hub checks (a member's signature, a valid
//! tree) without the secrets it lacks. A rejoin from the hub's GroupInfo is
//! taken only if that GroupInfo is exactly the shadow's state: a state its
//! members made by commits this device verified, newer than the last epoch
//! it shared. Anything else — an older epoch, a roster that no verified
//! commit leads to — is a rollback: refused with an alert, the old state
//! kept, the conversation left diverged, nothing sealed into it.
//!
//! ```text
//! shared epoch ──(commits delivered, verified publicly)──▶ shadow
//! hub GroupInfo == shadow, epoch > shared ─▶ rejoin (every key proven first)
//! otherwise                               ─▶ `rollback` alert, stay put
//! ```

use super::Engine;
use super::inbound::{Fork, commit_hash};
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::mls;
use crate::provider::Provider;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use std::collections::BTreeSet;
use valise_mls::{Leaf, PublicState};
use valise_proto::api::{GroupInfoState, SubmitCommit};
use valise_proto::wire::Entry as InboxEntry;
use valise_proto::{ConversationId, DeviceAddress, UserId};

/// The public state of an epoch this device left: a GroupInfo it signed
/// and the ratchet tree, from which it can follow the other side of a fork.
pub struct Snapshot {
    group_info: Vec<u8>,
    tree: Vec<u8>,
}

impl Snapshot {
    /// The public state of `group` as it is now.
    pub(crate) fn of(
        group: &MlsGroup,
        p: &Provider<'_>,
        signer: &SignatureKeyPair,
    ) -> Result<Self> {
        let info = group
            .export_group_info(p.crypto(), signer, false)
            .map_err(ClientError::mls)?;
        Ok(Self {
            group_info: mls::serialize(&info)?,
            tree: mls::serialize(&group.export_ratchet_tree())?,
        })
    }

    /// Length-prefixed GroupInfo, then the tree.
    pub(crate) fn encode(&self) -> Vec<u8> {
        let mut out = (self.group_info.len() as u64).to_be_bytes().to_vec();
        out.extend_from_slice(&self.group_info);
        out.extend_from_slice(&self.tree);
        out
    }

    fn decode(bytes: &[u8]) -> Result<Self> {
        let bad = || ClientError::Home("a kept group snapshot is damaged".into());
        let (len, rest) = bytes.split_at_checked(8).ok_or_else(bad)?;
        let len = u64::from_be_bytes(len.try_into().map_err(|_| bad())?);
        let (group_info, tree) = rest
            .split_at_checked(usize::try_from(len).map_err(|_| bad())?)
            .ok_or_else(bad)?;
        Ok(Self {
            group_info: group_info.to_vec(),
            tree: tree.to_vec(),
        })
    }

    fn follow(&self, engine: &Engine, conv: &ConversationId) -> Result<PublicState> {
        Ok(PublicState::follow(
            &engine.crypto,
            &valise_mls::Policy::default(),
            conv,
            &self.group_info,
            &self.tree,
        )?)
    }
}

/// What to make of the hub's GroupInfo for a conversation out of step.
#[derive(Debug)]
pub enum Judgement {
    /// This device's state is the hub's: nothing to do.
    InStep,
    /// The hub's state is the one this device verified: rejoin, once every
    /// one of these members' keys is proven.
    Rejoin(Vec<Leaf>),
    /// The hub is ahead of what this device was delivered: read the inbox
    /// again (a commit may be on its way) before judging.
    Behind,
    /// Not a state this device may take (a rollback); why.
    Refuse(String),
}

impl Engine {
    /// A commit the hub delivered and this device cannot process: it is out
    /// of step from its current epoch, and follows the hub's side from it.
    pub fn diverge_on_refused_commit(&self, entry: &InboxEntry) -> Result<()> {
        let conv = &entry.conversation;
        let epoch = self.with_group(conv, |g, _| Ok(g.epoch().as_u64()))?;
        self.home.mark_diverged(conv, None, epoch)?;
        self.follow_hub_side(conv, entry.message.as_slice())
    }

    /// A fork: out of step from the forked epoch; the other side is
    /// followed from the public state this device had there. Raises the
    /// `fork` alert with both commits' hashes, the other as evidence.
    pub fn diverge_on_fork(&self, entry: &InboxEntry, fork: &Fork) -> Result<()> {
        let conv = &entry.conversation;
        self.home
            .mark_diverged(conv, Some(fork.epoch), fork.epoch)?;
        self.home.set_update_due(conv)?;
        self.follow_hub_side(conv, entry.message.as_slice())?;
        let detail = format!(
            "two different commits for epoch {} of this conversation reached this device: \
             it follows {}, the other (from {}, as the server says) is {}. The server \
             accepted both, so members who followed the other no longer share this \
             conversation's keys (a fork): letters between the two sides will not arrive. \
             A device on the side the server does not follow rejoins on its next sync, \
             if the server's side is one its members made",
            fork.epoch,
            short_hash(&fork.followed),
            entry.sender,
            short_hash(&fork.other),
        );
        self.raise(
            AlertKind::Fork,
            Some(conv),
            &detail,
            Some(entry.message.as_slice()),
        )
    }

    /// Applies a commit the hub delivered to the public copy of its side,
    /// started from the last state this device shares with it (a kept
    /// shadow, the snapshot of the commit's epoch, or its own group). A
    /// commit that does not verify there is simply not followed.
    fn follow_hub_side(&self, conv: &ConversationId, commit: &[u8]) -> Result<()> {
        let Ok(epoch) = commit_epoch(commit) else {
            return Ok(());
        };
        let divergence = self.home.divergence(conv)?;
        let kept = divergence
            .shadow
            .as_deref()
            .and_then(|s| PublicState::load(conv, s).ok())
            .filter(|s| s.epoch() == epoch);
        let mut added = if kept.is_some() {
            divergence.shadow_added
        } else {
            String::new()
        };
        let start = match kept {
            Some(s) => Some(s),
            None => match self.home.snapshot(conv, epoch)? {
                Some(snap) => Snapshot::decode(&snap)?.follow(self, conv).ok(),
                None => self
                    .with_group(conv, |g, p| {
                        if g.epoch().as_u64() == epoch {
                            Ok(Some(Snapshot::of(g, p, &self.signer)?))
                        } else {
                            Ok(None)
                        }
                    })?
                    .and_then(|snap| snap.follow(self, conv).ok()),
            },
        };
        let Some(mut shadow) = start else {
            return Ok(());
        };
        let before: BTreeSet<DeviceAddress> = devices(&shadow)?;
        let removed = self.removed_since_shared(conv)?;
        match shadow.apply_commit(&self.crypto, commit, None) {
            // Signed by a device this side removed: not a commit of the
            // members any more; the hub's side stops here.
            Ok((_, by)) if removed.contains(&by) => self.home.taint_hub_side(
                conv,
                &format!(
                    "the server's side of the conversation holds a commit by {by}, a device \
                     this side removed"
                ),
            ),
            Ok(_) => {
                for d in devices(&shadow)?.difference(&before) {
                    if !added.is_empty() {
                        added.push(',');
                    }
                    added.push_str(&d.to_string());
                }
                self.home.set_shadow(conv, &shadow.state()?, &added)
            }
            Err(e) => {
                tracing::info!(conversation = %conv, error = %e, "commit not followed on the hub's side");
                Ok(())
            }
        }
    }

    /// Judges the hub's latest GroupInfo for `conv` (see the module doc).
    pub fn judge(&self, conv: &ConversationId, hub: &GroupInfoState) -> Result<Judgement> {
        let info = group_info(hub)?;
        let hub_epoch = info.group_context().epoch().as_u64();
        let ours = self.with_group(conv, |g, _| {
            let roster: BTreeSet<DeviceAddress> =
                mls::roster(g)?.into_iter().map(|(_, d)| d).collect();
            Ok((
                g.public_group().group_context().clone(),
                g.epoch().as_u64(),
                roster,
            ))
        });
        if let Ok((context, _, _)) = &ours
            && context == info.group_context()
        {
            return Ok(Judgement::InStep);
        }
        let (own_epoch, own_roster) = ours.map_or((0, BTreeSet::new()), |(_, e, r)| (e, r));
        let divergence = self.home.divergence(conv)?;
        if let Some(why) = divergence.hub_tainted {
            return Ok(Judgement::Refuse(why));
        }
        if divergence.cloned {
            return Ok(Judgement::Refuse(
                "another copy of this device committed in this conversation: this copy does \
                 not rejoin by itself (revoke the device and enrol it anew if the copy is not \
                 yours)"
                    .into(),
            ));
        }
        let shared = divergence.shared_epoch.unwrap_or(own_epoch);
        if hub_epoch <= shared {
            return Ok(Judgement::Refuse(format!(
                "the server offers this conversation's state of epoch {hub_epoch}, but this \
                 device already shared epoch {shared} with the others: going back would undo \
                 what members did since (a rollback)"
            )));
        }
        let shadow = divergence
            .shadow
            .as_deref()
            .map(|s| PublicState::load(conv, s))
            .transpose()?;
        Ok(match shadow {
            Some(s) if s.group_context() == info.group_context() => {
                // Everyone there is a member this device holds, or one a
                // commit it verified on the hub's side added; and nobody its
                // own side removed comes back, under any device (a rollback
                // of a removal).
                let added: BTreeSet<&str> = divergence.shadow_added.split(',').collect();
                let removed_users: BTreeSet<UserId> = self
                    .removed_since_shared(conv)?
                    .into_iter()
                    .map(|d| d.user)
                    .filter(|u| !own_roster.iter().any(|d| &d.user == u))
                    .collect();
                let leaves = s.leaves()?;
                let back: Vec<String> = leaves
                    .iter()
                    .map(|l| &l.device)
                    .filter(|d| {
                        removed_users.contains(&d.user)
                            || (!own_roster.contains(*d) && !added.contains(d.to_string().as_str()))
                    })
                    .map(ToString::to_string)
                    .collect();
                if back.is_empty() {
                    Judgement::Rejoin(leaves)
                } else {
                    Judgement::Refuse(format!(
                        "the server's state holds {} although this device's side of the \
                         conversation removed them, and no commit it verified added them again",
                        back.join(", ")
                    ))
                }
            }
            Some(s) if hub_epoch > s.epoch() => Judgement::Behind,
            None if hub_epoch > own_epoch => Judgement::Behind,
            _ => Judgement::Refuse(format!(
                "the server's state of epoch {hub_epoch} is not one the members reached by \
                 commits this device verified since epoch {shared} (its roster may hold \
                 devices that were removed): refused"
            )),
        })
    }

    /// The devices this side of a diverged conversation removed since the
    /// epoch it last shared with the hub (those of that epoch's kept state
    /// that its own group no longer holds).
    fn removed_since_shared(&self, conv: &ConversationId) -> Result<BTreeSet<DeviceAddress>> {
        let Some(shared) = self.home.divergence(conv)?.shared_epoch else {
            return Ok(BTreeSet::new());
        };
        let Some(snapshot) = self.home.snapshot(conv, shared)? else {
            return Ok(BTreeSet::new());
        };
        let then = devices(&Snapshot::decode(&snapshot)?.follow(self, conv)?)?;
        let now: BTreeSet<DeviceAddress> = self.with_group(conv, |g, _| {
            Ok(mls::roster(g)?.into_iter().map(|(_, d)| d).collect())
        })?;
        Ok(then.difference(&now).cloned().collect())
    }

    /// The members of the hub's state as its tree shows them, for a person
    /// who compared them out of band (`conversation rejoin --accept`).
    pub fn hub_members(&self, conv: &ConversationId, hub: &GroupInfoState) -> Result<Vec<Leaf>> {
        Ok(PublicState::follow(
            &self.crypto,
            &valise_mls::Policy::default(),
            conv,
            hub.group_info.as_slice(),
            hub.ratchet_tree.as_slice(),
        )?
        .leaves()?)
    }

    /// Replaces the local group by one rejoined from the hub's GroupInfo
    /// by external commit (resync of this device's own leaf) and returns
    /// the commit to submit. Runs inside the caller's open transaction,
    /// which it keeps only once the hub accepted.
    pub fn rejoin_from(&self, conv: &ConversationId, hub: &GroupInfoState) -> Result<SubmitCommit> {
        let p = self.provider();
        self.forget_group(conv);
        if let Some(mut old) = mls::load_group(&p, conv)? {
            old.delete(p.storage()).map_err(ClientError::mls)?;
        }
        let (group, staged) = mls::rejoin(
            &p,
            &self.signer,
            &self.me,
            hub.group_info.as_slice(),
            hub.ratchet_tree.as_slice(),
            self.root_stamp()?,
        )?;
        if group.group_id().as_slice() != conv.as_bytes() {
            return Err(ClientError::Protocol(
                "the hub's group info is for another conversation".into(),
            ));
        }
        let submit = staged.submit(hub.epoch);
        self.home
            .log_commit(conv, hub.epoch, &commit_hash(submit.commit.as_slice()))?;
        self.home
            .set_members_key(conv, &mls::members_key(&group)?)?;
        self.after_rejoin(conv, &group)?;
        Ok(submit)
    }

    /// After the hub took this device's rejoin: in step again, with a
    /// fresh leaf; its own letters since the fork are sealed again.
    pub fn rejoined(&self, conv: &ConversationId, epoch: u64, by_hand: bool) -> Result<usize> {
        let resent = self.resend_after_fork(conv)?;
        self.home.clear_diverged(conv)?;
        self.home.leaf_renewed(conv, self.now_ms())?;
        let how = if by_hand {
            "the person accepted the server's state after comparing it out of band \
             (`conversation rejoin --accept`)"
        } else {
            "the server's state is the one this device verified"
        };
        let detail = format!(
            "this device had lost track of the conversation (see the alert before) and \
             rejoined it at epoch {epoch} by external commit ({how}); it sends its {resent} \
             letters of that time again; letters others sent while it was out of step may be \
             missing here"
        );
        self.raise(AlertKind::Rejoined, Some(conv), &detail, None)?;
        Ok(resent)
    }
}

fn group_info(hub: &GroupInfoState) -> Result<openmls::messages::group_info::VerifiableGroupInfo> {
    match mls::parse_message(hub.group_info.as_slice())?.extract() {
        MlsMessageBodyIn::GroupInfo(info) => Ok(info),
        _ => Err(ClientError::Protocol(
            "the hub's group info is not a GroupInfo".into(),
        )),
    }
}

/// The devices of a public state.
fn devices(state: &PublicState) -> Result<BTreeSet<DeviceAddress>> {
    Ok(state.leaves()?.into_iter().map(|l| l.device).collect())
}

/// The epoch a commit (a PublicMessage) was made in.
fn commit_epoch(commit: &[u8]) -> Result<u64> {
    Ok(mls::parse_message(commit)?
        .try_into_protocol_message()
        .map_err(ClientError::mls)?
        .epoch()
        .as_u64())
}

/// The first bytes of a hash, in hex, for people to compare.
pub(crate) fn short_hash(hash: &[u8; 32]) -> String {
    hash.iter().take(8).map(|b| format!("{b:02x}")).collect()
}
