//! Which keys and identities this device believes, from the key directory.
//!
//! A verified lookup of a user gives their identity and every device with
//! the status its user's signatures give it (`valise_directory::identity`).
//! The device keeps that ([`Engine::record_proven`]) and believes only
//! approved keys: a letter is shown, and a member merged, only if its key
//! is approved (I2, I5). It also pins each peer's identity the first time
//! it sees it; a different identity later is an `identity_changed` alert,
//! and nothing is written to that person until the safety codes are
//! compared again (`valise verify USER --code`).

use super::Engine;
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::home::directory::{Contact, ContactState};
use valise_directory::{DeviceList, DeviceStatus, Devices};
use valise_proto::{DeviceAddress, UserId};

/// A user's devices as a verified lookup showed them.
#[derive(Debug, Clone)]
pub struct Proven {
    pub devices: Devices,
    /// The epoch of the root the lookup was verified against.
    pub epoch: u64,
}

/// Why a member or sender is not believed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Doubt {
    /// No verified lookup showed this device with this key.
    Unknown,
    /// Published, but no approved device of its user signed it.
    Pending,
    /// Revoked by its user or the administrator.
    Revoked,
}

impl Doubt {
    pub fn describe(self) -> &'static str {
        match self {
            Self::Unknown => "is not in the key directory",
            Self::Pending => "is not approved by its user (pending)",
            Self::Revoked => "was revoked",
        }
    }

    /// Why these users' devices are doubted, in one line (alerts).
    pub fn describe_all(doubts: &[(UserId, Doubt)]) -> String {
        doubts
            .iter()
            .map(|(u, d)| format!("a device of {u} {}", d.describe()))
            .collect::<Vec<_>>()
            .join("; ")
    }
}

impl Engine {
    /// Keeps what a verified lookup proved of `user` at `epoch`, and pins
    /// or checks their identity. The list must have only grown since the
    /// last one this device kept (see `valise_directory::check_succession`):
    /// a revocation undone or a device renumbered is refused, with a
    /// `directory_conflict` alert, and the earlier list stays. Returns the
    /// devices with their status.
    pub(crate) fn record_proven(
        &self,
        user: &UserId,
        list: &DeviceList,
        epoch: u64,
    ) -> Result<Proven> {
        let encoded = list.encode()?;
        if let Some(old) = self.home.directory_list(user)? {
            self.check_growth(user, &old, &encoded)?;
        }
        self.home.put_directory_list(user, &encoded, epoch)?;
        self.forget_clearances(Some(user));
        self.proven_this_read(user);
        let devices = valise_directory::identity::devices(user, list);
        let rows: Vec<_> = devices
            .devices
            .iter()
            .map(|(id, (entry, status))| (*id, entry.signature_key.0.clone(), status.as_str()))
            .collect();
        self.home.put_directory_devices(user, &rows, epoch)?;
        self.pin_identity(user, &devices)?;
        Ok(Proven { devices, epoch })
    }

    /// Refuses (and alerts on) a list of `user` that does not follow from
    /// `old` (both encoded), as no honest server publishes one.
    pub(crate) fn check_growth(&self, user: &UserId, old: &[u8], new: &[u8]) -> Result<()> {
        if old == new {
            return Ok(());
        }
        let old_list = DeviceList::decode(old)?;
        let new_list = DeviceList::decode(new)?;
        let Err(e) = valise_directory::check_succession(&old_list, &new_list) else {
            return Ok(());
        };
        let detail = format!(
            "the key directory's entry for {user} changed in a way an honest server never does \
             ({e}): this device keeps what it knew"
        );
        let mut evidence = old.to_vec();
        evidence.extend_from_slice(new);
        // Said once: the server keeps showing it on every lookup.
        if !self
            .home
            .has_alert(AlertKind::DirectoryConflict.as_str(), &evidence)?
        {
            self.raise(AlertKind::DirectoryConflict, None, &detail, Some(&evidence))?;
        }
        Err(ClientError::NotInDirectory(detail))
    }

    /// Trust on first use; a later change of identity (key or generation)
    /// is loud. This user's own identity is pinned too: a change there
    /// means its account was reset (or the server lies).
    fn pin_identity(&self, user: &UserId, devices: &Devices) -> Result<()> {
        let seen = Contact {
            identity_key: devices.identity.key.0.clone(),
            generation: devices.identity.generation,
            state: ContactState::Trusted,
        };
        match self.home.contact(user)? {
            None => self.home.put_contact(user, &seen, self.now_ms()),
            Some(c) if c.identity_key == seen.identity_key && c.generation == seen.generation => {
                Ok(())
            }
            Some(_) => {
                let changed = Contact {
                    state: ContactState::Changed,
                    ..seen
                };
                self.home.put_contact(user, &changed, self.now_ms())?;
                let detail = if user == &self.me.user {
                    format!(
                        "your account's identity changed (generation {}): it was reset, which \
                         only an administrator does, and this device no longer counts for it. \
                         If you did not ask for it, report it now",
                        changed.generation
                    )
                } else {
                    format!(
                        "{user}'s identity changed (generation {}): every device they had was \
                         replaced, which an administrator's reset does. Nothing is sent to {user} \
                         until you compare safety codes with them again: `valise verify {user}`, \
                         then `valise verify {user} --code CODE`",
                        changed.generation
                    )
                };
                self.raise(
                    AlertKind::IdentityChanged,
                    None,
                    &detail,
                    Some(&changed.identity_key),
                )
            }
        }
    }

    /// As [`Engine::doubt`], for a device whose key is not at hand (the
    /// sender of a letter of a past epoch, who left the group since).
    pub(crate) fn device_doubt(&self, device: &DeviceAddress) -> Result<Option<Doubt>> {
        Ok(doubt_of(
            self.home.device_status_any_key(device)?.as_deref(),
        ))
    }

    /// Why this device (with this key) is not to be believed, or `None`
    /// if a verified lookup showed it approved.
    pub(crate) fn doubt(&self, device: &DeviceAddress, key: &[u8]) -> Result<Option<Doubt>> {
        Ok(doubt_of(self.home.device_status(device, key)?.as_deref()))
    }

    /// The users among these devices that are not all believed, each with
    /// the first doubt found.
    pub(crate) fn doubted(
        &self,
        members: &[(DeviceAddress, Vec<u8>)],
    ) -> Result<Vec<(UserId, Doubt)>> {
        self.doubted_where(members, |_| true)
    }

    /// As [`Engine::doubted`], for members of a group: a device revoked
    /// since it was added (the Welcome or commit was made before) is no
    /// reason to refuse the group, as every member removes it on its next
    /// sync; a device its user never approved is.
    pub(crate) fn doubted_members(
        &self,
        members: &[(DeviceAddress, Vec<u8>)],
    ) -> Result<Vec<(UserId, Doubt)>> {
        self.doubted_where(members, |d| d != Doubt::Revoked)
    }

    fn doubted_where(
        &self,
        members: &[(DeviceAddress, Vec<u8>)],
        counts: impl Fn(Doubt) -> bool,
    ) -> Result<Vec<(UserId, Doubt)>> {
        let mut users: Vec<(UserId, Doubt)> = Vec::new();
        for (device, key) in members {
            if let Some(d) = self.doubt(device, key)?.filter(|d| counts(*d))
                && !users.iter().any(|(u, _)| u == &device.user)
            {
                users.push((device.user.clone(), d));
            }
        }
        Ok(users)
    }

    /// Whether this device may write to `user` (add their devices, seal a
    /// letter that reaches them): not while their identity changed and
    /// nobody verified the new one. For this device's own user: not while
    /// its own identity changed (its account was reset).
    pub(crate) fn may_write_to(&self, user: &UserId) -> Result<bool> {
        Ok(self
            .home
            .contact(user)?
            .is_none_or(|c| c.state != ContactState::Changed))
    }

    /// The person compared safety codes with `user`: their current
    /// identity is verified (and writing to them resumes).
    pub(crate) fn mark_verified(&self, user: &UserId) -> Result<()> {
        if let Some(mut c) = self.home.contact(user)? {
            c.state = ContactState::Verified;
            self.home.put_contact(user, &c, self.now_ms())?;
        }
        Ok(())
    }

    /// A device of this user revoked (seen in its entry's history): said
    /// once, unless `quiet` (at enrolment), naming who revoked it.
    pub(crate) fn tell_revocation(
        &self,
        device: &valise_proto::DeviceId,
        key: &[u8],
        by: Option<valise_proto::DeviceId>,
        quiet: bool,
    ) -> Result<()> {
        // This device's own act needs no telling.
        let own_act = by == Some(self.me.device);
        if !self.home.tell_revocation_once(device, key)? || quiet || own_act {
            return Ok(());
        }
        let who = match by {
            Some(by) => format!("by your device {by}"),
            None => "by the administrator (or an account reset)".to_owned(),
        };
        let what = if device == &self.me.device {
            "this device".to_owned()
        } else {
            format!("your device {device}")
        };
        self.raise(
            AlertKind::DeviceRevoked,
            None,
            &format!(
                "{what} was revoked {who}: it can no longer log in, and your conversations \
                 drop it"
            ),
            Some(key),
        )
    }

    /// A device of this user's entry seen in its history: raises
    /// `new_device` the first time (unless `quiet`, at enrolment).
    pub(crate) fn learn_own_device(
        &self,
        device: &valise_proto::DeviceId,
        key: &[u8],
        status: Option<DeviceStatus>,
        epoch: u64,
        quiet: bool,
    ) -> Result<bool> {
        let new = self.home.learn_own_device(device, key)?;
        if !new || quiet || device == &self.me.device {
            return Ok(false);
        }
        let me = &self.me.user;
        let what = match status {
            Some(DeviceStatus::Pending) => format!(
                "is waiting for approval: if it is yours, approve it with `valise devices approve \
                 CODE` (the code it shows); if not, revoke it with `valise devices revoke {device}` \
                 and report it"
            ),
            Some(DeviceStatus::Revoked { .. }) => "was revoked since".to_owned(),
            _ => format!(
                "was approved: if you did not approve it, revoke it with `valise devices revoke \
                 {device}` and report it"
            ),
        };
        self.raise(
            AlertKind::NewDevice,
            None,
            &format!(
                "a device {device} was published for your account {me} at directory epoch \
                 {epoch}; it {what}"
            ),
            Some(key),
        )?;
        Ok(true)
    }
}

fn doubt_of(status: Option<&str>) -> Option<Doubt> {
    match status {
        Some("approved") => None,
        Some("pending") => Some(Doubt::Pending),
        Some("revoked") => Some(Doubt::Revoked),
        _ => Some(Doubt::Unknown),
    }
}
