//! Who decides which devices read a user's letters: the user's own devices,
//! never the server.
//!
//! # The identity
//! A user's identity is a chain of approvals rooted in the device that
//! founded it. The founding device's signature key is the **identity key**
//! ([`Identity::key`]), published with every version of the user's entry;
//! a safety code is computed over it, so it does not change when devices
//! come and go. The server cannot make a device count: it can only publish
//! one, which stays *pending* until an approved device of the same user
//! signs it.
//!
//! ```text
//! founder   key == identity key, generation == current          approved
//! device D  ap = { by: A, sig: Sign_A(approval_message(D)) }    approved if
//!             A is approved (recursively), A.number < D.number,
//!             and A was not revoked before D existed (A.rv.at > D.number)
//! any       rv present, or enrolled under an older generation   revoked
//! otherwise                                                     pending
//! ```
//! Numbers order enrolments (0, 1, 2, … with no gap) and are signed inside
//! approvals: a device revoked at `at` cannot approve a device enrolled
//! after its revocation, yet the devices it approved before stay approved.
//! Revoking is always accepted, signed or not: it only removes. A
//! revocation that names a revoking device but whose signature does not
//! verify was tampered with: the revoked device's approvals then count for
//! nothing at all.
//!
//! # What may change
//! A user's entry only grows: devices are never removed, renumbered or
//! re-keyed, an approval or revocation once published never changes or
//! disappears, and the identity key changes only with a new generation
//! ([`check_succession`]). A device checks this across every version of its
//! own user's entry and across the lookups it makes of anyone else; a
//! server that undoes a revocation, or numbers a device into the past, is
//! caught there.
//!
//! # Resets
//! `valised admin invite --reset` is for a person who lost every device:
//! the next device founds a new identity (generation + 1) and every device
//! of older generations counts as revoked. Peers see the identity key
//! change and refuse to write to it until someone compares safety codes
//! again: an administrator can deny service this way, but cannot read.

use crate::entry::{DeviceEntry, DeviceList, Identity, Revocation};
use crate::error::DirectoryError;
use ed25519_dalek::{Signature, VerifyingKey};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use valise_proto::{DeviceId, UserId};

/// What a device of a user is, as the user's own signatures say.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeviceStatus {
    /// Founded the identity (`by: None`) or approved by the device `by`.
    Approved { by: Option<DeviceId> },
    /// Published, but no approved device of the user has signed it.
    Pending,
    /// Revoked by the user's device `by` (its signature verified), or by
    /// the server (`by: None`: an administrator, or an identity reset).
    Revoked { by: Option<DeviceId> },
}

impl DeviceStatus {
    /// The name `valise devices` shows: `approved`, `pending` or `revoked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Approved { .. } => "approved",
            Self::Pending => "pending",
            Self::Revoked { .. } => "revoked",
        }
    }

    pub fn is_approved(self) -> bool {
        matches!(self, Self::Approved { .. })
    }
}

/// A user's devices with the status their signatures give them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Devices {
    pub identity: Identity,
    /// Every listed device, by id.
    pub devices: BTreeMap<DeviceId, (DeviceEntry, DeviceStatus)>,
}

impl Devices {
    /// The status of one device; `None` if it is not listed.
    pub fn status(&self, device: &DeviceId) -> Option<DeviceStatus> {
        self.devices.get(device).map(|(_, s)| *s)
    }

    /// The signature key of an approved device: what a client checks before
    /// adding a device or accepting anything it signs.
    pub fn approved_key(&self, device: &DeviceId) -> Option<&[u8]> {
        self.devices
            .get(device)
            .filter(|(_, s)| s.is_approved())
            .map(|(e, _)| e.signature_key.as_bytes())
    }

    /// The approved devices and their keys.
    pub fn approved(&self) -> impl Iterator<Item = (&DeviceId, &[u8])> {
        self.devices
            .iter()
            .filter(|(_, (_, s))| s.is_approved())
            .map(|(id, (e, _))| (id, e.signature_key.as_bytes()))
    }
}

/// Gives every device of `user`'s list its status (see the module doc).
pub fn devices(user: &UserId, list: &DeviceList) -> Devices {
    let identity = list.identity().clone();
    let mut by_number: Vec<&DeviceEntry> = list.devices().iter().collect();
    by_number.sort_by_key(|d| d.number);
    // Whether each device's own approval chain holds, whatever happened to
    // it later; computed in number order, so approvers come first.
    let mut chained: BTreeMap<DeviceId, bool> = BTreeMap::new();
    let mut founder = None;
    for d in &by_number {
        let current = d.generation == identity.generation;
        let founds = current && founder.is_none() && d.signature_key == identity.key;
        if founds {
            founder = Some(d.device);
        }
        let ok = current && (founds || approval_holds(user, &identity, list, &chained, d));
        chained.insert(d.device, ok);
    }
    let devices = by_number
        .into_iter()
        .map(|d| {
            let status = if d.generation != identity.generation {
                DeviceStatus::Revoked { by: None }
            } else if let Some(rv) = &d.revocation {
                DeviceStatus::Revoked {
                    by: revoker(user, &identity, list, &chained, d, rv),
                }
            } else if chained.get(&d.device) == Some(&true) {
                // The founder is approved by nobody, whatever it carries.
                DeviceStatus::Approved {
                    by: (founder != Some(d.device))
                        .then(|| d.approval.as_ref().map(|a| a.by))
                        .flatten(),
                }
            } else {
                DeviceStatus::Pending
            };
            (d.device, (d.clone(), status))
        })
        .collect();
    Devices { identity, devices }
}

/// Whether `d`'s approval is signed by a device whose chain holds, that
/// existed before `d` and was not revoked before `d` was enrolled.
fn approval_holds(
    user: &UserId,
    identity: &Identity,
    list: &DeviceList,
    chained: &BTreeMap<DeviceId, bool>,
    d: &DeviceEntry,
) -> bool {
    let Some(ap) = &d.approval else { return false };
    let Some(approver) = list.get(&ap.by) else {
        return false;
    };
    let in_time = approver.number < d.number
        && approver
            .revocation
            .as_ref()
            .is_none_or(|rv| d.number < effective_at(user, identity, list, approver, rv));
    in_time
        && chained.get(&approver.device) == Some(&true)
        && verifies(
            approver.signature_key.as_bytes(),
            &approval_message(
                user,
                identity,
                &d.device,
                d.signature_key.as_bytes(),
                d.number,
            ),
            ap.signature.as_bytes(),
        )
}

/// The device that revoked `d`, if its signature verifies; `None` (the
/// server) otherwise. Either way `d` is revoked.
fn revoker(
    user: &UserId,
    identity: &Identity,
    list: &DeviceList,
    chained: &BTreeMap<DeviceId, bool>,
    d: &DeviceEntry,
    rv: &Revocation,
) -> Option<DeviceId> {
    let by = rv.by?;
    let signer = list.get(&by)?;
    let message = revocation_message(user, identity, &d.device, d.signature_key.as_bytes(), rv.at);
    let signed = rv
        .signature
        .as_ref()
        .is_some_and(|s| verifies(signer.signature_key.as_bytes(), &message, s.as_bytes()));
    (signed && chained.get(&by) == Some(&true)).then_some(by)
}

/// The number from which a revoked device approves nothing: its `at`, but
/// right after its own number if the revocation claims a revoking device
/// whose signature does not verify (tampered with: nothing it says counts).
fn effective_at(
    user: &UserId,
    identity: &Identity,
    list: &DeviceList,
    revoked: &DeviceEntry,
    rv: &Revocation,
) -> u64 {
    let Some(by) = rv.by else { return rv.at };
    let message = revocation_message(
        user,
        identity,
        &revoked.device,
        revoked.signature_key.as_bytes(),
        rv.at,
    );
    let signed = list
        .get(&by)
        .zip(rv.signature.as_ref())
        .is_some_and(|(signer, sig)| {
            verifies(signer.signature_key.as_bytes(), &message, sig.as_bytes())
        });
    if signed { rv.at } else { revoked.number + 1 }
}

/// Checks that `new` can follow `old` as versions of one user's entry:
/// nothing published is removed or changed (see the module doc). Refused
/// with what changed, as evidence the server rewrote the entry.
pub fn check_succession(old: &DeviceList, new: &DeviceList) -> Result<(), DirectoryError> {
    let bad = |m: String| Err(DirectoryError::BadEntry(m));
    let (o, n) = (old.identity(), new.identity());
    if n.generation < o.generation {
        return bad(format!(
            "the identity's generation went back from {} to {}",
            o.generation, n.generation
        ));
    }
    if n.generation == o.generation && n.key != o.key {
        return bad("the identity key changed without a new generation".into());
    }
    for before in old.devices() {
        let Some(after) = new.get(&before.device) else {
            return bad(format!("device {} disappeared", before.device));
        };
        let what = if after.signature_key != before.signature_key {
            Some("key")
        } else if after.number != before.number || after.generation != before.generation {
            Some("number or generation")
        } else if before.approval.is_some() && after.approval != before.approval {
            Some("approval")
        } else if before.revocation.is_some() && after.revocation != before.revocation {
            Some("revocation")
        } else {
            None
        };
        if let Some(what) = what {
            return bad(format!("device {}'s {what} changed", before.device));
        }
    }
    Ok(())
}

fn verifies(key: &[u8], message: &[u8], signature: &[u8]) -> bool {
    let Ok(key) = <[u8; 32]>::try_from(key) else {
        return false;
    };
    let Ok(key) = VerifyingKey::from_bytes(&key) else {
        return false;
    };
    let Ok(signature) = Signature::from_slice(signature) else {
        return false;
    };
    key.verify_strict(message, &signature).is_ok()
}

fn put(out: &mut Vec<u8>, bytes: &[u8]) {
    out.extend_from_slice(&(bytes.len() as u64).to_be_bytes());
    out.extend_from_slice(bytes);
}

fn statement(
    context: &[u8],
    user: &UserId,
    identity: &Identity,
    device: &DeviceId,
    key: &[u8],
    number: u64,
) -> Vec<u8> {
    let mut out = context.to_vec();
    put(&mut out, user.as_str().as_bytes());
    put(&mut out, identity.key.as_bytes());
    out.extend_from_slice(&identity.generation.to_be_bytes());
    out.extend_from_slice(device.as_bytes());
    put(&mut out, key);
    out.extend_from_slice(&number.to_be_bytes());
    out
}

/// What an approved device signs to approve `device` (with `key`, enrolled
/// as number `number`) into `user`'s identity. Domain-separated and bound
/// to the identity, so it counts for nothing else.
pub fn approval_message(
    user: &UserId,
    identity: &Identity,
    device: &DeviceId,
    key: &[u8],
    number: u64,
) -> Vec<u8> {
    statement(
        b"valise/directory/approval/v1\0",
        user,
        identity,
        device,
        key,
        number,
    )
}

/// What an approved device signs to revoke `device` when the user's devices
/// were numbered below `at`.
pub fn revocation_message(
    user: &UserId,
    identity: &Identity,
    device: &DeviceId,
    key: &[u8],
    at: u64,
) -> Vec<u8> {
    statement(
        b"valise/directory/revocation/v1\0",
        user,
        identity,
        device,
        key,
        at,
    )
}

/// Digits of a link code: five groups of five (about 83 bits), so that a
/// server, which sees every new device's key and code at once, cannot
/// grind a key of its own that shows the same code before the person types
/// it (at 15 digits it could, with enough hardware).
const LINK_CODE_DIGITS: usize = 25;

/// The short code a new device shows and a person reads to an existing
/// device of theirs (`valise devices approve CODE`): a fingerprint of the
/// new device's identity and key.
pub fn link_code(user: &UserId, device: &DeviceId, key: &[u8]) -> String {
    let mut h = Sha256::new();
    h.update(b"valise/directory/link-code/v1\0");
    h.update((user.as_str().len() as u64).to_be_bytes());
    h.update(user.as_str());
    h.update(device.as_bytes());
    h.update((key.len() as u64).to_be_bytes());
    h.update(key);
    let digest = h.finalize();
    let mut n = [0u8; 16];
    n.copy_from_slice(&digest[..16]);
    let digits = format!(
        "{:0width$}",
        u128::from_be_bytes(n) % 10u128.pow(LINK_CODE_DIGITS as u32),
        width = LINK_CODE_DIGITS
    );
    digits
        .as_bytes()
        .chunks(5)
        .map(|c| String::from_utf8_lossy(c).into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// A code as a person typed it: its digits only.
pub fn code_digits(code: &str) -> String {
    code.chars().filter(char::is_ascii_digit).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::entry::{Approval, Revocation, SignatureKey};
    use ed25519_dalek::{Signer as _, SigningKey};

    fn user() -> UserId {
        UserId::parse("bob@mfa.example").unwrap()
    }

    struct Dev {
        id: DeviceId,
        key: SigningKey,
    }

    fn dev(n: u8) -> Dev {
        Dev {
            id: DeviceId::from_bytes([n; 8]),
            key: SigningKey::from_bytes(&[n; 32]),
        }
    }

    fn public(d: &Dev) -> Vec<u8> {
        d.key.verifying_key().to_bytes().to_vec()
    }

    fn identity(founder: &Dev, generation: u32) -> Identity {
        Identity {
            key: SignatureKey(public(founder)),
            generation,
        }
    }

    fn entry(d: &Dev, number: u64, generation: u32) -> DeviceEntry {
        DeviceEntry::new(d.id, public(d), number, generation)
    }

    fn approve(id: &Identity, approver: &Dev, e: &mut DeviceEntry) {
        let m = approval_message(&user(), id, &e.device, e.signature_key.as_bytes(), e.number);
        e.approval = Some(Approval {
            by: approver.id,
            signature: SignatureKey(approver.key.sign(&m).to_bytes().to_vec()),
        });
    }

    fn revoke(id: &Identity, by: Option<&Dev>, e: &mut DeviceEntry, at: u64) {
        let m = revocation_message(&user(), id, &e.device, e.signature_key.as_bytes(), at);
        e.revocation = Some(Revocation {
            at,
            by: by.map(|d| d.id),
            signature: by.map(|d| SignatureKey(d.key.sign(&m).to_bytes().to_vec())),
        });
    }

    fn statuses(id: Identity, entries: Vec<DeviceEntry>) -> Devices {
        devices(&user(), &DeviceList::new(id, entries).unwrap())
    }

    #[test]
    fn founder_approves_and_the_chain_holds() {
        let (a, b, c, x) = (dev(1), dev(2), dev(3), dev(4));
        let id = identity(&a, 1);
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        let mut ec = entry(&c, 2, 1);
        approve(&id, &b, &mut ec);
        let ex = entry(&x, 3, 1);
        let s = statuses(id, vec![entry(&a, 0, 1), eb, ec, ex]);
        assert_eq!(s.status(&a.id), Some(DeviceStatus::Approved { by: None }));
        assert_eq!(
            s.status(&b.id),
            Some(DeviceStatus::Approved { by: Some(a.id) })
        );
        assert_eq!(
            s.status(&c.id),
            Some(DeviceStatus::Approved { by: Some(b.id) })
        );
        // Enrolled by the server, signed by nobody.
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
        assert!(s.approved_key(&x.id).is_none());
        assert_eq!(s.approved().count(), 3);
    }

    #[test]
    fn signatures_that_do_not_fit_approve_nothing() {
        let (a, b, x) = (dev(1), dev(2), dev(4));
        let id = identity(&a, 1);
        // Signed by a pending device.
        let mut ex = entry(&x, 1, 1);
        approve(&id, &b, &mut ex);
        // Signed for another number than the one published.
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        eb.number = 2;
        let s = statuses(id.clone(), vec![entry(&a, 0, 1), eb, ex.clone()]);
        assert_eq!(s.status(&b.id), Some(DeviceStatus::Pending));
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
        // Signed by a device enrolled after it (numbers are signed).
        let mut late = entry(&b, 2, 1);
        approve(&id, &a, &mut late);
        let mut early = entry(&x, 1, 1);
        approve(&id, &b, &mut early);
        let s = statuses(id.clone(), vec![entry(&a, 0, 1), late, early]);
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
        // Under another identity (bound into the signature).
        let other = identity(&b, 1);
        let mut ex = entry(&x, 1, 1);
        approve(&other, &a, &mut ex);
        let s = statuses(id, vec![entry(&a, 0, 1), ex]);
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
    }

    #[test]
    fn a_revoked_device_keeps_its_past_approvals_but_makes_no_new_ones() {
        let (a, b, c, x) = (dev(1), dev(2), dev(3), dev(4));
        let id = identity(&a, 1);
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        let mut ec = entry(&c, 2, 1);
        approve(&id, &a, &mut ec);
        let mut ea = entry(&a, 0, 1);
        revoke(&id, Some(&b), &mut ea, 3);
        // A thief holding a's key approves a device enrolled after the revocation.
        let mut ex = entry(&x, 3, 1);
        approve(&id, &a, &mut ex);
        let s = statuses(id, vec![ea, eb, ec, ex]);
        assert_eq!(
            s.status(&a.id),
            Some(DeviceStatus::Revoked { by: Some(b.id) })
        );
        assert!(s.status(&b.id).unwrap().is_approved());
        assert!(s.status(&c.id).unwrap().is_approved());
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
    }

    #[test]
    fn unsigned_revocations_count_and_resets_revoke_older_generations() {
        let (a, b, n) = (dev(1), dev(2), dev(5));
        let id = identity(&a, 1);
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        let mut forged = eb.clone();
        revoke(&id, None, &mut forged, 2);
        let s = statuses(id.clone(), vec![entry(&a, 0, 1), forged]);
        assert_eq!(s.status(&b.id), Some(DeviceStatus::Revoked { by: None }));
        // Reset: n founds generation 2; a and b are revoked by it.
        let reset = identity(&n, 2);
        let s = statuses(reset, vec![entry(&a, 0, 1), eb, entry(&n, 2, 2)]);
        assert_eq!(s.status(&a.id), Some(DeviceStatus::Revoked { by: None }));
        assert_eq!(s.status(&b.id), Some(DeviceStatus::Revoked { by: None }));
        assert_eq!(s.status(&n.id), Some(DeviceStatus::Approved { by: None }));
    }

    #[test]
    fn a_tampered_revocation_voids_everything_its_device_approved() {
        let (a, b, x) = (dev(1), dev(2), dev(4));
        let id = identity(&a, 1);
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        let mut ea = entry(&a, 0, 1);
        revoke(&id, Some(&b), &mut ea, 2);
        let mut ex = entry(&x, 2, 1);
        approve(&id, &a, &mut ex);
        let honest = statuses(id.clone(), vec![ea.clone(), eb.clone(), ex.clone()]);
        assert_eq!(honest.status(&x.id), Some(DeviceStatus::Pending));
        // The server raises `at` (breaking b's signature) to let a's
        // approval of x count: a then approves nothing.
        ea.revocation.as_mut().unwrap().at = 3;
        let s = statuses(id, vec![ea, eb, ex]);
        assert_eq!(s.status(&x.id), Some(DeviceStatus::Pending));
        assert_eq!(s.status(&a.id), Some(DeviceStatus::Revoked { by: None }));
    }

    #[test]
    fn an_entry_only_grows() {
        let (a, b, c, d) = (dev(1), dev(2), dev(3), dev(5));
        let id = identity(&a, 1);
        let mut eb = entry(&b, 1, 1);
        approve(&id, &a, &mut eb);
        let old = DeviceList::new(id.clone(), vec![entry(&a, 0, 1), eb.clone()]).unwrap();
        let mut revoked = eb.clone();
        revoke(&id, Some(&a), &mut revoked, 2);
        let grown = DeviceList::new(
            id.clone(),
            vec![entry(&a, 0, 1), revoked.clone(), entry(&c, 2, 1)],
        )
        .unwrap();
        assert!(check_succession(&old, &grown).is_ok());
        // A revocation undone, a device gone, a key or identity swapped.
        assert!(check_succession(&grown, &old).is_err());
        let gone = DeviceList::new(id.clone(), vec![entry(&a, 0, 1)]).unwrap();
        assert!(check_succession(&old, &gone).is_err());
        let swapped = DeviceList::new(identity(&c, 1), vec![entry(&a, 0, 1), eb]).unwrap();
        assert!(check_succession(&old, &swapped).is_err());
        // A reset: a new generation may bring a new identity key.
        let reset = DeviceList::new(
            identity(&d, 2),
            vec![entry(&a, 0, 1), revoked, entry(&c, 2, 1), entry(&d, 3, 2)],
        )
        .unwrap();
        assert!(check_succession(&grown, &reset).is_ok());
    }

    #[test]
    fn link_codes_are_twenty_five_digits_and_bound_to_the_key() {
        let (b, x) = (dev(2), dev(4));
        let code = link_code(&user(), &b.id, &public(&b));
        assert_eq!(code.len(), 29);
        assert_eq!(code_digits(&code).len(), 25);
        assert_ne!(code, link_code(&user(), &b.id, &public(&x)));
        assert_ne!(code, link_code(&user(), &x.id, &public(&b)));
        assert_eq!(code_digits(" 1-2 3 "), "123");
    }
}
