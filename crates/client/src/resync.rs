//! Rejoining a conversation this device lost track of: after two commits
//! for one epoch (a fork) or a commit it could not process (a malformed
//! commit from a member, a dropped commit), its group state may no longer
//! be the hub's. It then compares its group context with the hub's latest
//! GroupInfo and, if they differ, rejoins by external commit, replacing its
//! own leaf (resync): one epoch later everyone shares the state again.
//!
//! A hostile server can only make a device rejoin needlessly (a visible
//! commit, the same members); every key in the tree it serves must still be
//! proven by the key directory before the rejoin is submitted.

use crate::alert::AlertKind;
use crate::client::Client;
use crate::error::{ClientError, Result};
use crate::mls;
use openmls::prelude::*;
use reqwest::Method;
use rusqlite::params;
use valise_proto::api::{ConversationState, GroupInfoState, SubmitCommit};
use valise_proto::{ConversationId, ErrorCode, UserId};

/// Rejoin attempts per sync (each re-reads the hub's GroupInfo after losing
/// a race for the epoch).
const REJOIN_ATTEMPTS: usize = 5;

impl Client {
    /// Marks a conversation as possibly out of step with the hub; `fork`:
    /// the epoch that had two commits (the earliest one is kept).
    pub(crate) fn mark_diverged(&self, conv: &ConversationId, fork: Option<u64>) -> Result<()> {
        self.home.conn.execute(
            "UPDATE conversations SET diverged = 1,
                 fork_epoch = min(coalesce(fork_epoch, ?1), coalesce(?1, fork_epoch))
             WHERE id = ?2",
            params![fork.map(|e| e as i64), conv.to_string()],
        )?;
        Ok(())
    }

    /// In step again: nothing is left to check or to send again.
    fn clear_diverged(&self, conv: &ConversationId) -> Result<()> {
        self.home.conn.execute(
            "UPDATE conversations SET diverged = 0, fork_epoch = NULL WHERE id = ?1",
            [conv.to_string()],
        )?;
        Ok(())
    }

    /// Checks every conversation marked out of step; returns how many this
    /// device rejoined. A failure is logged and retried on the next sync.
    pub(crate) async fn resync_diverged(&mut self) -> Result<usize> {
        let marked: Vec<String> = {
            let mut stmt = self
                .home
                .conn
                .prepare("SELECT id FROM conversations WHERE diverged = 1 AND active = 1")?;
            stmt.query_map([], |r| r.get(0))?
                .collect::<Result<_, _>>()?
        };
        let mut rejoined = 0;
        for conv in marked {
            let conv = ConversationId::parse(&conv)?;
            match self.resync(&conv).await {
                Ok(true) => rejoined += 1,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(conversation = %conv, error = %e, "rejoin failed; retried on the next sync");
                }
            }
        }
        Ok(rejoined)
    }

    /// Rejoins `conv` if this device's state is not the hub's; true if it did.
    async fn resync(&mut self, conv: &ConversationId) -> Result<bool> {
        for _ in 0..REJOIN_ATTEMPTS {
            let path = format!("/v1/conversations/{conv}/group-info");
            let hub: GroupInfoState = self.call::<(), _>(Method::GET, &path, None).await?;
            let MlsMessageBodyIn::GroupInfo(info) =
                mls::parse_message(hub.group_info.as_slice())?.extract()
            else {
                return Err(ClientError::Protocol(
                    "the hub's group info is not a GroupInfo".into(),
                ));
            };
            let ours = self.with_group(conv, |g, _| Ok(g.public_group().group_context().clone()));
            if ours.is_ok_and(|ours| &ours == info.group_context()) {
                self.clear_diverged(conv)?;
                return Ok(false);
            }
            let submit = self.rebuild(conv, &hub).await?;
            let path = format!("/v1/conversations/{conv}/commits");
            match self
                .call::<_, ConversationState>(Method::POST, &path, Some(&submit))
                .await
            {
                Ok(state) => {
                    let resent = self.resend_after_fork(conv)?;
                    self.clear_diverged(conv)?;
                    let detail = format!(
                        "this device had lost track of the conversation (see the alert before) \
                         and rejoined it at epoch {} by external commit; it sends its {resent} \
                         letters of that time again; letters others sent while it was out of \
                         step may be missing here",
                        state.epoch
                    );
                    self.raise(AlertKind::Rejoined, Some(conv), &detail, None)?;
                    return Ok(true);
                }
                Err(e) if e.is_server(ErrorCode::StaleEpoch) => continue,
                Err(e) => return Err(e),
            }
        }
        Err(ClientError::Contention)
    }

    /// Replaces the local group by one rejoined from the hub's GroupInfo
    /// (merged at once, not yet submitted); every member key must be proven.
    async fn rebuild(
        &mut self,
        conv: &ConversationId,
        hub: &GroupInfoState,
    ) -> Result<SubmitCommit> {
        let (mut submit, unproven) = self.rejoin_locally(conv, hub)?;
        if !unproven.is_empty() {
            for user in &unproven {
                self.prove_user(user).await?;
            }
            let (again, still) = self.rejoin_locally(conv, hub)?;
            if !still.is_empty() {
                let names: Vec<&str> = still.iter().map(|u| u.as_str()).collect();
                let detail = format!(
                    "refused to rejoin: the hub's tree holds keys of {} that the key directory \
                     does not",
                    names.join(", ")
                );
                self.raise(AlertKind::KeyNotInDirectory, Some(conv), &detail, None)?;
                return Err(ClientError::NotInDirectory(detail));
            }
            submit = again;
        }
        Ok(submit)
    }

    /// One rebuild in one transaction; also says whose keys are unproven.
    fn rejoin_locally(
        &self,
        conv: &ConversationId,
        hub: &GroupInfoState,
    ) -> Result<(SubmitCommit, Vec<UserId>)> {
        self.transaction(|| {
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
            )?;
            if group.group_id().as_slice() != conv.as_bytes() {
                return Err(ClientError::Protocol(
                    "the hub's group info is for another conversation".into(),
                ));
            }
            let unproven = self.unproven(&mls::roster_keys(&group)?)?;
            let submit = staged.submit(hub.epoch);
            self.log_commit(conv, hub.epoch, submit.commit.as_slice())?;
            Ok((submit, unproven))
        })
    }
}
