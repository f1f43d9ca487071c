//! Markings enforced per recipient (issue 11): the authority key pinned at
//! enrolment, the check of a conversation's devices before a marked
//! letter is sealed ([`super::outbound`]), and on receipt
//! ([`super::inbound`]). The decisions are in [`crate::accreditation`].
//!
//! On receipt of a marked letter:
//! - this device not accredited: the letter is neither shown nor kept (a
//!   device must not hold what it is not cleared for), and a `spillage`
//!   alert names sender, conversation and marking;
//! - another device of the conversation not accredited: shown, and a
//!   `spillage` alert names that device. So every device of the epoch
//!   alerts, whoever sent the letter past the check.

use super::Engine;
use crate::accreditation::{Clearances, Lack};
use crate::alert::AlertKind;
use crate::error::{ClientError, Result};
use crate::home::accreditation::AuthorityPin;
use valise_directory::DeviceList;
use valise_proto::attestation::AuthorityKey;
use valise_proto::{ConversationId, DeviceAddress, Label, UserId};

/// What a device does with a marked letter it received.
pub(crate) enum Clearance {
    Show,
    /// Not shown, kept as a stub saying why; `spillage` raised.
    Refused(String),
    /// Judged on entries older than this read of the inbox: these users'
    /// are to be proven again first.
    Stale(Vec<UserId>),
}

impl Engine {
    /// Pins the key the server named at enrolment; refuses it if the user
    /// was told (out of band) to expect another fingerprint.
    pub(crate) fn pin_authority(&self, named: Option<&str>, expected: Option<&str>) -> Result<()> {
        let key = named
            .map(AuthorityKey::parse)
            .transpose()
            .map_err(|e| ClientError::Protocol(format!("the accreditation authority key: {e}")))?;
        if let Some(expected) = expected {
            let got = key.map(|k| k.fingerprint_hex()).unwrap_or_default();
            if !got.eq_ignore_ascii_case(expected.trim()) {
                return Err(ClientError::AuthorityMismatch(if got.is_empty() {
                    "(none)".into()
                } else {
                    got
                }));
            }
        }
        self.home.set_authority_pin(&AuthorityPin {
            pinned: key.map(|k| k.to_string()),
            ..AuthorityPin::default()
        })?;
        *self.clearances.borrow_mut() = None;
        Ok(())
    }

    /// The server names `named` now (asked during housekeeping). Pinned on
    /// first sight if this device pinned none; otherwise a different key
    /// (or none) is alerted once and never used. A malformed key counts as
    /// none: the server's word stops no sync, and only a key reaches an
    /// alert, never its raw text.
    pub(crate) fn learn_authority(&self, named: Option<&str>) -> Result<()> {
        let mut pin = self.home.authority_pin()?;
        let parsed = named.and_then(|k| AuthorityKey::parse(k).ok());
        let named = parsed.map(|k| k.to_string());
        if pin.pinned.is_none() && !pin.changed {
            let (Some(key), Some(parsed)) = (named.as_deref(), parsed) else {
                return Ok(());
            };
            // Trust on first use, but seen: an administrator (or whoever
            // holds the server) naming its own key would otherwise accredit
            // whom it likes on every device that enrolled before the
            // officer's key was set.
            let fingerprint = parsed.fingerprint_hex();
            let detail = format!(
                "the server names an accreditation authority for the first time (fingerprint \
                 {fingerprint}) and this device pinned it: check the fingerprint with your \
                 security officer"
            );
            return self.transaction(|| {
                self.pin_authority(Some(key), None)?;
                self.raise(
                    AlertKind::AccreditationAuthorityChanged,
                    None,
                    &detail,
                    None,
                )
            });
        }
        if named == pin.pinned {
            if pin.changed {
                (pin.changed, pin.offered) = (false, None);
                self.home.set_authority_pin(&pin)?;
            }
            return Ok(());
        }
        if pin.changed && pin.offered == named {
            return Ok(());
        }
        (pin.changed, pin.offered) = (true, named.clone());
        let detail = format!(
            "the server names {} as the accreditation authority, but this device pinned {}: it \
             keeps verifying accreditations under the pinned key only",
            named.as_deref().unwrap_or("no key"),
            pin.pinned.as_deref().unwrap_or("none"),
        );
        self.transaction(|| {
            self.home.set_authority_pin(&pin)?;
            self.raise(
                AlertKind::AccreditationAuthorityChanged,
                None,
                &detail,
                None,
            )
        })
    }

    /// The first of `devices` not accredited for `label` now, and why.
    pub(crate) fn unaccredited<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a DeviceAddress>,
        label: &Label,
    ) -> Result<Option<(DeviceAddress, Lack)>> {
        Ok(self.lacking(devices, label, true)?.into_iter().next())
    }

    /// The devices of `devices` not accredited for `label` now, and why;
    /// with `first`, only the first.
    fn lacking<'a>(
        &self,
        devices: impl IntoIterator<Item = &'a DeviceAddress>,
        label: &Label,
        first: bool,
    ) -> Result<Vec<(DeviceAddress, Lack)>> {
        if !label.needs_accreditation() {
            return Ok(Vec::new());
        }
        let now_s = self.now_ms() / 1000;
        let devices: Vec<&DeviceAddress> = devices.into_iter().collect();
        self.with_clearances(|c| {
            for device in &devices {
                if c.list(&device.user).is_none() {
                    let list = self.attestations_of(&device.user)?;
                    c.set_list(&device.user, list);
                }
            }
            Ok(c.lacking(&devices, label, now_s, first))
        })
    }

    /// Refuses to seal a letter marked `label` into `conv` while a device
    /// of its current epoch is not accredited for it.
    pub(crate) fn check_marked(&self, conv: &ConversationId, label: &Label) -> Result<()> {
        if crate::failpoint::modified("skip_marking_check") {
            return Ok(());
        }
        let roster = self.roster(conv)?;
        match self.unaccredited(&roster, label)? {
            None => Ok(()),
            Some((device, lack)) => Err(ClientError::Unaccredited {
                device: device.to_string(),
                marking: label.marking().entry().short,
                why: lack.describe(),
            }),
        }
    }

    /// A letter marked `label` from `sender` arrived in `conv`: whether
    /// this device may show it. Raises `spillage` when this device, or
    /// any other of the conversation, is not accredited for it — judged on
    /// directory entries proven during this read of the inbox: the users
    /// whose older entries lack it are named first, to be proven again (an
    /// accreditation published after this device last read them would
    /// otherwise lose the letter and raise a false alarm).
    pub(crate) fn clearance(
        &self,
        conv: &ConversationId,
        sender: &DeviceAddress,
        label: &Label,
    ) -> Result<Clearance> {
        let mut devices = vec![self.me.clone()];
        devices.extend(self.roster(conv)?.into_iter().filter(|d| *d != self.me));
        let lacking = self.lacking(&devices, label, false)?;
        let mut stale: Vec<UserId> = {
            let proven = self.proven_this_read.borrow();
            lacking
                .iter()
                .map(|(d, _)| &d.user)
                .filter(|u| !proven.contains_key(*u))
                .cloned()
                .collect()
        };
        if !stale.is_empty() {
            stale.sort();
            stale.dedup();
            return Ok(Clearance::Stale(stale));
        }
        let marking = label.marking().entry().short;
        if let Some((_, lack)) = lacking.iter().find(|(d, _)| *d == self.me) {
            let why = format!(
                "marked {marking}: this device {}, so it is not accredited for it{}",
                lack.describe(),
                self.judged_on(&self.me.user)
            );
            let detail = format!(
                "a letter from {sender} was not shown nor kept (only a stub saying why): {why}"
            );
            self.raise(AlertKind::Spillage, Some(conv), &detail, None)?;
            return Ok(Clearance::Refused(why));
        }
        if let Some((device, lack)) = lacking.first() {
            let detail = format!(
                "a letter from {sender} marked {marking} reached this conversation, where device \
                 {device} {}, so it is not accredited for it{}",
                lack.describe(),
                self.judged_on(&device.user)
            );
            self.raise(AlertKind::Spillage, Some(conv), &detail, None)?;
        }
        Ok(Clearance::Show)
    }

    /// A new read of the inbox begins: entries proven before it count as
    /// old for [`Engine::clearance`].
    pub(crate) fn begin_inbox_read(&self) {
        self.proven_this_read.borrow_mut().clear();
    }

    /// `user`'s entry was proven now.
    pub(crate) fn proven_this_read(&self, user: &UserId) {
        self.proven_this_read
            .borrow_mut()
            .insert(user.clone(), true);
    }

    /// `user`'s entry was looked up again during this read (or none can be
    /// made here): unless that proved it, marked letters are judged on the
    /// entry this device holds, and what is said of them says so.
    pub(crate) fn looked_up_this_read(&self, user: &UserId) {
        self.proven_this_read
            .borrow_mut()
            .entry(user.clone())
            .or_insert(false);
    }

    /// How a judgment on `user`'s entry is qualified: a server that fails
    /// the lookup must not make a stale entry read as a fact (a false
    /// spillage at the desk), nor hide a real one (so it is still said).
    fn judged_on(&self, user: &UserId) -> &'static str {
        match self.proven_this_read.borrow().get(user) {
            Some(false) => {
                " (judged on the directory entry this device held: it could not be read again \
                 now, and may predate an accreditation)"
            }
            _ => "",
        }
    }

    /// The directory showed `user` a new list: their attestations are
    /// read again at the next check.
    pub(crate) fn forget_clearances(&self, user: Option<&UserId>) {
        if let Some(c) = self.clearances.borrow_mut().as_mut() {
            c.forget(user);
        }
    }

    /// `user`'s attestations in their last verified directory entry.
    fn attestations_of(&self, user: &UserId) -> Result<Vec<Vec<u8>>> {
        Ok(match self.home.directory_list(user)? {
            Some(bytes) => DeviceList::decode(&bytes)?
                .attestations()
                .map(<[u8]>::to_vec)
                .collect(),
            None => Vec::new(),
        })
    }

    fn with_clearances<T>(&self, f: impl FnOnce(&mut Clearances) -> Result<T>) -> Result<T> {
        let mut slot = self.clearances.borrow_mut();
        let c = match slot.as_mut() {
            Some(c) => c,
            None => {
                let key = self
                    .home
                    .authority_pin()?
                    .pinned
                    .map(|k| AuthorityKey::parse(&k))
                    .transpose()
                    .map_err(|e| ClientError::Home(format!("the pinned authority key: {e}")))?;
                slot.insert(Clearances::new(key))
            }
        };
        f(c)
    }
}
