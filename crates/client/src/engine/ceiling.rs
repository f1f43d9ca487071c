//! Conversation ceilings (issue 11): the highest label a letter in a
//! conversation may carry, kept in an encrypted policy record whose salted
//! hash the MLS group context holds ([`valise_proto::policy`]).
//!
//! What this device decides, with no I/O:
//! - **Which ceiling holds.** Its own record at creation; a joiner takes
//!   the first record a member sends whose hash the group context holds.
//!   A record that does not match the epoch's hash is not taken (alert
//!   `ceiling_changed`). A conversation without a policy hash has no
//!   ceiling: only the readers' accreditations limit it (`send --to`
//!   writes such conversations).
//! - **Changes.** Valise never changes a ceiling after creation (make a new
//!   conversation instead). A commit that changes the policy hash was made
//!   by a modified client: it is merged like any valid commit (no fork),
//!   this device keeps the ceiling it held, alerts `ceiling_changed`, and
//!   the conversation is *degraded* for good: no marked letter is sealed
//!   there again. So is a change a device finds when it joins again (a
//!   Welcome after its removal, a rejoin from the hub's GroupInfo): the
//!   group's hash is not that of the record it kept.
//! - **Members.** A commit that brings in a device not accredited for the
//!   ceiling is merged, alerts `unaccredited_member`, and degrades the
//!   conversation until no such device is left. The check runs after the
//!   inbox page, once the members' directory entries (and so their
//!   attestations) were read afresh (`Client::check_ceilings`).
//! - **Letters.** Sending refuses a label the ceiling does not dominate, and
//!   any marked letter (other than TLP:CLEAR) in a degraded conversation or
//!   one whose ceiling is not known yet. A received letter above the
//!   ceiling is not stored (nothing of it is shown or kept) and alerts
//!   `spillage`.

use super::Engine;
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::mls;
use openmls::prelude::MlsGroup;
use valise_proto::policy::{POLICY_HASH_BYTES, PolicyRecord};
use valise_proto::{ConversationId, DeviceAddress, Label, Marking};

/// Why a conversation is degraded, as kept in the home (first word).
const DEGRADED_CEILING: &str = "ceiling";
const DEGRADED_MEMBER: &str = "member";

/// A conversation's ceiling as this device holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ceiling {
    /// No policy hash in the group: no ceiling.
    None,
    /// The group holds a policy hash whose record this device has not
    /// received (yet): treated as the lowest ceiling.
    Unknown,
    /// The record this device holds.
    Known(Label),
}

/// A fresh policy record (a new salt) for a new conversation with this
/// ceiling.
pub(crate) fn new_policy(ceiling: Label) -> PolicyRecord {
    PolicyRecord::new(ceiling, rand::random())
}

impl Engine {
    /// The ceiling this device holds for `conv`.
    pub fn ceiling(&self, conv: &ConversationId) -> Result<Ceiling> {
        if let Some(ceiling) = self.known_ceiling(conv)? {
            return Ok(Ceiling::Known(ceiling));
        }
        let hash = self.with_group(conv, |group, _| Ok(mls::policy_hash(group.extensions())))?;
        Ok(match hash {
            Some(_) => Ceiling::Unknown,
            None => Ceiling::None,
        })
    }

    /// Why `conv` is degraded, if it is.
    pub fn degraded(&self, conv: &ConversationId) -> Result<Option<String>> {
        Ok(self.row(conv)?.degraded)
    }

    /// Refuses to seal a letter labelled `label` into `conv` when its
    /// ceiling does not admit it (see the module doc).
    pub(crate) fn check_ceiling(&self, conv: &ConversationId, label: Option<&Label>) -> Result<()> {
        let Some(label) = label.filter(|l| l.marking() != Marking::TlpClear) else {
            return Ok(());
        };
        if crate::failpoint::modified("skip_marking_check") {
            return Ok(());
        }
        if let Some(why) = self.degraded(conv)? {
            return Err(ClientError::Handling {
                code: "degraded",
                detail: format!(
                    "conversation {conv} is degraded ({why}): no marked letter is sent there"
                ),
            });
        }
        match self.ceiling(conv)? {
            Ceiling::None => Ok(()),
            Ceiling::Unknown => Err(ClientError::Handling {
                code: "above_ceiling",
                detail: format!(
                    "conversation {conv}'s ceiling is not known on this device yet (sync first): \
                     only unmarked or TLP:CLEAR letters go there"
                ),
            }),
            Ceiling::Known(ceiling) if ceiling.dominates(label) => Ok(()),
            Ceiling::Known(ceiling) => Err(ClientError::Handling {
                code: "above_ceiling",
                detail: format!(
                    "{label} is above conversation {conv}'s ceiling ({ceiling}): not sent"
                ),
            }),
        }
    }

    /// Whether a received letter labelled `label` may be shown in `conv`;
    /// if not, alerts `spillage` (naming the sender, not the label).
    pub(crate) fn admit_received(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        label: Option<&Label>,
    ) -> Result<bool> {
        let admitted = match (label, self.ceiling(conv)?) {
            (None, _) | (_, Ceiling::None) => true,
            (Some(l), _) if l.marking() == Marking::TlpClear => true,
            (Some(_), Ceiling::Unknown) => false,
            (Some(l), Ceiling::Known(ceiling)) => ceiling.dominates(l),
        };
        if !admitted {
            self.raise(
                AlertKind::Spillage,
                Some(conv),
                &format!(
                    "{sender} sent a letter marked above this conversation's ceiling: it is \
                     not shown here, only a stub saying why (report it to your security officer)"
                ),
                None,
            )?;
        }
        Ok(admitted)
    }

    /// Takes a member's policy record if it is the one the group context
    /// holds and this device has none (its members are then to be checked);
    /// alerts when it is not.
    pub(crate) fn receive_policy(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        record: &PolicyRecord,
    ) -> Result<()> {
        let held = self.with_group(conv, |group, _| Ok(mls::policy_hash(group.extensions())))?;
        let matches = record
            .hash()
            .is_ok_and(|h| held.as_deref() == Some(h.as_slice()));
        let row = self.row(conv)?;
        match (matches, row.policy) {
            (true, None) => {
                let bytes = record
                    .encode()
                    .map_err(|e| ClientError::Invalid(e.to_string()))?;
                self.home.set_policy(conv, &bytes)?;
                self.roster_checks.borrow_mut().insert(*conv);
                Ok(())
            }
            (true, Some(mine)) if record.encode().is_ok_and(|r| r == mine) => Ok(()),
            // A record for a changed hash: the change was alerted with its
            // commit; this device keeps its ceiling.
            (true, Some(_)) => Ok(()),
            (false, _) => self.raise(
                AlertKind::CeilingChanged,
                Some(conv),
                &format!(
                    "{sender} sent a conversation policy that the group does not hold: it was \
                     not taken"
                ),
                None,
            ),
        }
    }

    /// After a merged commit by `sender`: a changed policy hash degrades the
    /// conversation for good; its members are to be checked against the
    /// ceiling (by the caller, once their entries are read afresh).
    /// `before`: the policy hash of the epoch the commit left.
    pub(crate) fn after_policy_commit(
        &self,
        conv: &ConversationId,
        group: &MlsGroup,
        sender: &DeviceAddress,
        before: Option<Vec<u8>>,
    ) -> Result<()> {
        if mls::policy_hash(group.extensions()) != before {
            self.ceiling_changed(conv, &format!("changed by {sender}"))?;
        }
        self.roster_checks.borrow_mut().insert(*conv);
        Ok(())
    }

    /// After this device joined `conv` again (a Welcome after its removal,
    /// or a rejoin from the hub's GroupInfo): no commit showed it what
    /// happened meanwhile, so the group's policy hash is compared with the
    /// record it kept; a different one (or none) is a change, as by commit.
    pub(crate) fn after_rejoin(&self, conv: &ConversationId, group: &MlsGroup) -> Result<()> {
        let Some(kept) = self.row(conv)?.policy else {
            return Ok(());
        };
        let held = mls::policy_hash(group.extensions());
        if held.as_deref() != Some(valise_proto::policy::hash(&kept).as_slice()) {
            self.ceiling_changed(conv, "changed while this device was out of it")?;
        }
        self.roster_checks.borrow_mut().insert(*conv);
        Ok(())
    }

    /// Degrades `conv` for good and alerts: its ceiling was changed `how`.
    fn ceiling_changed(&self, conv: &ConversationId, how: &str) -> Result<()> {
        let detail = format!(
            "this conversation's ceiling was {how}, which Valise never does: the ceiling this \
             device held stays, and no marked letter is sent here again"
        );
        self.home
            .set_degraded(conv, Some(&format!("{DEGRADED_CEILING}: {how}")))?;
        self.raise(AlertKind::CeilingChanged, Some(conv), &detail, None)
    }

    /// The conversations whose members must be checked against their
    /// ceiling ([`Engine::check_roster`]) since this was last asked.
    pub(crate) fn due_roster_checks(&self) -> Vec<ConversationId> {
        std::mem::take(&mut *self.roster_checks.borrow_mut())
            .into_iter()
            .collect()
    }

    /// Checks the roster of `conv` against its ceiling, with the
    /// accreditations of its members' last verified directory entries.
    pub(crate) fn check_roster(&self, conv: &ConversationId) -> Result<()> {
        let members = self.roster(conv)?.into_iter().collect();
        self.check_members_accredited(conv, members)
    }

    /// The policy record the home holds for `conv`, if any.
    pub(crate) fn policy_record(&self, conv: &ConversationId) -> Result<Option<PolicyRecord>> {
        self.row(conv)?
            .policy
            .map(|bytes| {
                PolicyRecord::decode(&bytes)
                    .map_err(|e| ClientError::Home(format!("stored policy record: {e}")))
            })
            .transpose()
    }

    /// The ceiling the home holds for `conv` (no group needed).
    fn known_ceiling(&self, conv: &ConversationId) -> Result<Option<Label>> {
        Ok(self.policy_record(conv)?.map(|r| r.ceiling().clone()))
    }

    /// Degrades `conv` (and alerts, once) while a member device is not
    /// accredited for its ceiling; makes it whole again once none is left.
    fn check_members_accredited(
        &self,
        conv: &ConversationId,
        members: Vec<DeviceAddress>,
    ) -> Result<()> {
        let Some(ceiling) = self.known_ceiling(conv)? else {
            return Ok(());
        };
        let unaccredited = self.unaccredited(&members, &ceiling)?;
        let degraded = self.degraded(conv)?;
        let by_member = degraded
            .as_deref()
            .is_some_and(|d| d.starts_with(DEGRADED_MEMBER));
        match unaccredited {
            Some((device, lack)) if degraded.is_none() => {
                self.home.set_degraded(
                    conv,
                    Some(&format!("{DEGRADED_MEMBER}: {device} is not accredited")),
                )?;
                self.raise(
                    AlertKind::UnaccreditedMember,
                    Some(conv),
                    &format!(
                        "device {device} {}, so it is not accredited for this conversation's \
                         ceiling: no marked letter is sent here until it is removed",
                        lack.describe()
                    ),
                    None,
                )
            }
            None if by_member => self.home.set_degraded(conv, None),
            _ => Ok(()),
        }
    }

    fn row(&self, conv: &ConversationId) -> Result<crate::home::conversations::Conversation> {
        self.home
            .conversation(conv)?
            .ok_or_else(|| ClientError::NotFound {
                kind: "conversation",
                id: conv.to_string(),
            })
    }
}

/// The policy hash of a new group with this record.
pub(crate) fn policy_hash(
    record: Option<&PolicyRecord>,
) -> Result<Option<[u8; POLICY_HASH_BYTES]>> {
    record
        .map(|r| r.hash().map_err(|e| ClientError::Invalid(e.to_string())))
        .transpose()
}
