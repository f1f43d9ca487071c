//! Rejoining over the network: for each conversation out of step, the
//! hub's latest GroupInfo is fetched and judged by the engine
//! ([`crate::engine::rejoin`]); a state the device verified is rejoined by
//! external commit once every member's key is proven, anything else is
//! refused with a `rollback` alert and the device stays put.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::engine::rejoin::Judgement;
use crate::error::{ClientError, Result};
use reqwest::Method;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use valise_mls::Leaf;
use valise_proto::api::{ConversationState, GroupInfoState};
use valise_proto::{ConversationId, ErrorCode, UserId};

/// Rejoin attempts per sync (each re-reads the hub's GroupInfo after losing
/// a race for the epoch, or reading the inbox once more).
const REJOIN_ATTEMPTS: usize = 5;

/// A conversation's members as this device trusts them, beside what the hub
/// says (`valise conversation show`).
#[derive(Debug, Clone, Serialize)]
pub struct ConversationDetail {
    pub id: ConversationId,
    pub epoch: u64,
    pub diverged: bool,
    /// The MLS roster this device holds: user → devices.
    pub trusted: BTreeMap<UserId, Vec<String>>,
    /// The hub's epoch and roster (from its GroupInfo and tree), if it
    /// answered.
    pub hub_epoch: Option<u64>,
    pub hub: Option<BTreeMap<UserId, Vec<String>>>,
    /// The ceiling this device holds, as users write it.
    pub ceiling: Option<String>,
    /// False while the group holds a policy whose record has not arrived.
    pub ceiling_known: bool,
    /// Why marked letters are refused here, if they are.
    pub degraded: Option<String>,
}

impl Client {
    /// Checks every conversation marked out of step; returns how many this
    /// device rejoined. A failure is logged and retried on the next sync.
    pub(crate) async fn resync_diverged(&mut self) -> Result<usize> {
        let mut rejoined = 0;
        for conv in self.engine.home.diverged_conversations()? {
            match self.resync(&conv).await {
                Ok(true) => rejoined += 1,
                Ok(false) => {}
                Err(e) if e.is_transient() => return Err(e),
                Err(e) => {
                    tracing::warn!(conversation = %conv, error = %e, "rejoin failed; retried on the next sync");
                }
            }
        }
        Ok(rejoined)
    }

    pub(crate) async fn group_info(&mut self, conv: &ConversationId) -> Result<GroupInfoState> {
        let path = format!("/v1/conversations/{conv}/group-info");
        self.call::<(), _>(Method::GET, &path, None).await
    }

    /// Rejoins `conv` if the hub's state is one this device verified; true
    /// if it did.
    async fn resync(&mut self, conv: &ConversationId) -> Result<bool> {
        for attempt in 0..REJOIN_ATTEMPTS {
            let hub = self.group_info(conv).await?;
            match self.engine.judge(conv, &hub)? {
                Judgement::InStep => {
                    self.engine.home.clear_diverged(conv)?;
                    return Ok(false);
                }
                Judgement::Behind if attempt + 1 < REJOIN_ATTEMPTS => {
                    self.pull(0).await?;
                }
                Judgement::Behind => {
                    return self.refuse(
                        conv,
                        &hub,
                        "the server's state is ahead of every commit it delivered to this device",
                    );
                }
                Judgement::Refuse(why) => return self.refuse(conv, &hub, &why),
                Judgement::Rejoin(leaves) => match self.rejoin(conv, &hub, &leaves, false).await {
                    Err(e) if e.is_server(ErrorCode::StaleEpoch) => {
                        self.pull(0).await.map(|_| ())?
                    }
                    other => return other.map(|_| true),
                },
            }
        }
        Err(ClientError::Contention)
    }

    /// A state this device may not take: alerted with the GroupInfo as
    /// evidence (once: it is offered again on every sync); the old state
    /// stays, and so does the divergence.
    fn refuse(&self, conv: &ConversationId, hub: &GroupInfoState, why: &str) -> Result<bool> {
        let kind = AlertKind::Rollback;
        self.engine.home.set_update_due(conv)?;
        if self
            .engine
            .home
            .has_alert(kind.as_str(), hub.group_info.as_slice())?
        {
            return Ok(false);
        }
        let detail = format!(
            "refused to rejoin from the server's group state: {why}. This device keeps its \
             own state and seals nothing there; compare the rosters (`valise conversation show \
             {conv}`) and, if they are right, `valise conversation rejoin {conv} --accept`"
        );
        self.engine
            .raise(kind, Some(conv), &detail, Some(hub.group_info.as_slice()))?;
        Ok(false)
    }

    /// Proves every member's key, then rejoins by external commit inside
    /// one transaction that is kept only if the hub accepts: a refused
    /// rejoin leaves the old state exactly as it was.
    async fn rejoin(
        &mut self,
        conv: &ConversationId,
        hub: &GroupInfoState,
        leaves: &[Leaf],
        by_hand: bool,
    ) -> Result<usize> {
        let users: BTreeSet<UserId> = leaves.iter().map(|l| l.device.user.clone()).collect();
        for user in &users {
            self.prove_user(user).await?;
        }
        // Members this device holds may have been revoked since (they are
        // removed right after); anyone else must be approved now.
        let ours = self.engine.roster(conv).unwrap_or_default();
        let (held, others): (Vec<_>, Vec<_>) = leaves
            .iter()
            .filter(|l| l.device != self.engine.me)
            .map(|l| (l.device.clone(), l.signature_key.clone()))
            .partition(|(d, _)| ours.contains(d));
        let mut doubted = self.engine.doubted_members(&held)?;
        doubted.extend(self.engine.doubted(&others)?);
        if !doubted.is_empty() {
            let why: Vec<String> = doubted
                .iter()
                .map(|(u, d)| format!("a device of {u} {}", d.describe()))
                .collect();
            let detail = format!("refused to rejoin: in the hub's tree, {}", why.join("; "));
            self.engine.raise(
                AlertKind::KeyNotInDirectory,
                Some(conv),
                &detail,
                Some(hub.group_info.as_slice()),
            )?;
            return Err(ClientError::NotInDirectory(detail));
        }
        self.engine.home.begin()?;
        let outcome = async {
            let submit = self.engine.rejoin_from(conv, hub)?;
            let path = format!("/v1/conversations/{conv}/commits");
            let state: ConversationState = self.call(Method::POST, &path, Some(&submit)).await?;
            self.engine.rejoined(conv, state.epoch, by_hand)
        }
        .await;
        self.engine.home.end(outcome.is_ok())?;
        if outcome.is_err() {
            self.engine.forget_groups();
        }
        outcome
    }

    /// Rejoins `conv` from the hub's state whatever this device verified:
    /// for a person who compared the rosters out of band. Every key is
    /// still proven, and the rejoin is recorded as an alert.
    pub async fn accept_hub_state(&mut self, conv: &ConversationId) -> Result<()> {
        let hub = self.group_info(conv).await?;
        let leaves = self.engine.hub_members(conv, &hub)?;
        self.rejoin(conv, &hub, &leaves, true).await.map(|_| ())
    }

    /// The roster this device trusts beside the hub's.
    pub async fn conversation_detail(
        &mut self,
        conv: &ConversationId,
    ) -> Result<ConversationDetail> {
        let view = self
            .engine
            .conversations()?
            .into_iter()
            .find(|c| &c.id == conv)
            .ok_or_else(|| ClientError::NotFound {
                kind: "conversation",
                id: conv.to_string(),
            })?;
        let hub = match self.group_info(conv).await {
            Ok(hub) => Some(hub),
            Err(e) if e.is_transient() => return Err(e),
            Err(e) => {
                tracing::info!(conversation = %conv, error = %e, "no hub state");
                None
            }
        };
        let hub_roster = hub
            .as_ref()
            .map(|h| self.engine.hub_members(conv, h))
            .transpose()?
            .map(|leaves| {
                let mut m: BTreeMap<UserId, Vec<String>> = BTreeMap::new();
                for l in leaves {
                    m.entry(l.device.user)
                        .or_default()
                        .push(l.device.device.to_string());
                }
                m
            });
        Ok(ConversationDetail {
            id: *conv,
            epoch: view.epoch,
            diverged: view.diverged,
            trusted: view.members,
            hub_epoch: hub.map(|h| h.epoch),
            hub: hub_roster,
            ceiling: view.ceiling,
            ceiling_known: view.ceiling_known,
            degraded: view.degraded,
        })
    }
}
