//! Which devices count, on lists a hostile server could publish: the
//! statuses `identity::devices` gives are checked against a reference
//! written again from the rule in `identity.rs`'s module doc, on random
//! lists whose signatures are real, forged or changed in transit.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::{Dev, Signer};
use ed25519_dalek::{Signature, VerifyingKey};
use proptest::prelude::*;
use proptest::sample::Index;
use std::collections::BTreeSet;
use valise_directory::{
    DeviceEntry, DeviceList, DeviceStatus, Devices, Identity, SignatureKey, approval_message,
    identity,
};
use valise_proto::{DeviceId, UserId};

fn user() -> UserId {
    UserId::parse("bob@mfa.example").unwrap()
}

/// Device `i` of a random list (ids and keys distinct from `Dev::new(0)`'s).
fn dev(i: usize) -> Dev {
    Dev::new(u8::try_from(i + 1).unwrap())
}

/// An order of enrolment for up to 8 devices: `numbers[..n]` ranked gives
/// each of `n` devices its number, 0 to n - 1 in no particular order.
fn numbers() -> impl Strategy<Value = Vec<u64>> {
    Just((0..8).collect::<Vec<u64>>()).prop_shuffle()
}

/// Device `i`'s number among the first `n` (see [`numbers`]).
fn rank(numbers: &[u64], n: usize, i: usize) -> u64 {
    numbers[..n].iter().filter(|m| **m < numbers[i]).count() as u64
}

/// A revocation point a list accepts for a device numbered `number` among
/// `n`: after the device, at most the next number.
fn revoked_at(raw: u64, number: u64, n: usize) -> u64 {
    number + 1 + raw % (n as u64 - number)
}

/// The device the rule makes the founder: the lowest-numbered device of the
/// current generation with the identity key.
fn founder(id: &Identity, entries: &[DeviceEntry]) -> Option<DeviceId> {
    entries
        .iter()
        .filter(|e| e.generation == id.generation && e.signature_key == id.key)
        .min_by_key(|e| e.number)
        .map(|e| e.device)
}

fn statuses(list: &DeviceList) -> Devices {
    identity::devices(&user(), list)
}

/// A device named (among the list's, or one more) and random bytes as its
/// signature.
type Claim = (Index, Vec<u8>);

/// One device of a list whose signatures are random bytes.
#[derive(Debug, Clone)]
struct Unsigned {
    /// Which of a few keys it has: keys repeat, and one may be the identity's.
    key: usize,
    generation: u32,
    approval: Option<Claim>,
    revocation: Option<(u64, Option<Claim>)>,
}

fn signature_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        prop::collection::vec(any::<u8>(), 64),
        prop::collection::vec(any::<u8>(), 1..100),
    ]
}

fn unsigned() -> impl Strategy<Value = Unsigned> {
    (
        0..4usize,
        1..=3u32,
        prop::option::of((any::<Index>(), signature_bytes())),
        prop::option::of((
            0..22u64,
            prop::option::of((any::<Index>(), signature_bytes())),
        )),
    )
        .prop_map(|(key, generation, approval, revocation)| Unsigned {
            key,
            generation,
            approval,
            revocation,
        })
}

/// A list and how it was made: the rule of `identity.rs`'s module doc
/// written out again as simply as possible, knowing which signatures are
/// real from how they were made rather than by verifying them.
struct Model {
    identity: Identity,
    entries: Vec<DeviceEntry>,
    /// For each device, whether its approval (if any) is really signed by
    /// the device it names; the same for its revocation.
    real_approval: Vec<bool>,
    real_revocation: Vec<bool>,
}

impl Model {
    fn index(&self, id: &DeviceId) -> Option<usize> {
        self.entries.iter().position(|e| e.device == *id)
    }

    /// Whether device `i`'s own chain of approvals holds, whatever happened
    /// to it later. Terminates: each step goes to a lower number.
    fn chained(&self, i: usize) -> bool {
        let e = &self.entries[i];
        if e.generation != self.identity.generation {
            return false;
        }
        if founder(&self.identity, &self.entries) == Some(e.device) {
            return true;
        }
        let Some(ap) = &e.approval else { return false };
        let Some(a) = self.index(&ap.by) else {
            return false;
        };
        let approver = &self.entries[a];
        // A revocation naming a device whose signature is not real voids
        // everything the revoked device approved.
        let until = |rv: &valise_directory::Revocation| match rv.by {
            Some(_) if !self.real_revocation[a] => approver.number + 1,
            _ => rv.at,
        };
        self.real_approval[i]
            && approver.number < e.number
            && approver
                .revocation
                .as_ref()
                .is_none_or(|rv| e.number < until(rv))
            && self.chained(a)
    }

    fn status(&self, i: usize) -> DeviceStatus {
        let e = &self.entries[i];
        if e.generation != self.identity.generation {
            DeviceStatus::Revoked { by: None }
        } else if let Some(rv) = &e.revocation {
            let by = rv.by.filter(|by| {
                self.real_revocation[i] && self.index(by).is_some_and(|r| self.chained(r))
            });
            DeviceStatus::Revoked { by }
        } else if self.chained(i) {
            let founds = founder(&self.identity, &self.entries) == Some(e.device);
            DeviceStatus::Approved {
                by: e.approval.as_ref().map(|ap| ap.by).filter(|_| !founds),
            }
        } else {
            DeviceStatus::Pending
        }
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let list = DeviceList::new(self.identity.clone(), self.entries.clone()).unwrap();
        let got = statuses(&list);
        prop_assert_eq!(got.devices.len(), self.entries.len());
        for (i, e) in self.entries.iter().enumerate() {
            prop_assert_eq!(got.status(&e.device), Some(self.status(i)), "device {}", i);
        }
        Ok(())
    }
}

/// One device of a list whose signatures are made by the list's devices.
#[derive(Debug, Clone)]
struct Signed {
    generation: u32,
    /// Approved by this device (any, itself included); really signed by it
    /// if true, by a key outside the list otherwise.
    approval: Option<(Index, bool)>,
    /// Revoked at, by the server or by a device (really signed or not).
    revocation: Option<(u64, Option<(Index, bool)>)>,
}

fn signed() -> impl Strategy<Value = Signed> {
    (
        1..=3u32,
        prop::option::of((any::<Index>(), any::<bool>())),
        prop::option::of((0..22u64, prop::option::of((any::<Index>(), any::<bool>())))),
    )
        .prop_map(|(generation, approval, revocation)| Signed {
            generation,
            approval,
            revocation,
        })
}

/// Device `i`'s own key if `real`, a key outside every list otherwise.
fn signing_key(i: usize, real: bool) -> Dev {
    if real { dev(i) } else { Dev::new(0) }
}

/// The devices of `entries` (changed or not) that count, by id.
fn approved(s: &Devices) -> BTreeSet<DeviceId> {
    s.approved().map(|(id, _)| *id).collect()
}

/// Whether `d`'s approval is signed by the key of the device it names,
/// checked here with ed25519-dalek directly.
fn really_approved(user: &UserId, list: &DeviceList, d: &DeviceEntry) -> bool {
    let Some(ap) = &d.approval else { return false };
    let Some(approver) = list.get(&ap.by) else {
        return false;
    };
    let Ok(key) = <[u8; 32]>::try_from(approver.signature_key.as_bytes()) else {
        return false;
    };
    let (Ok(key), Ok(sig)) = (
        VerifyingKey::from_bytes(&key),
        Signature::from_slice(ap.signature.as_bytes()),
    ) else {
        return false;
    };
    let m = approval_message(
        user,
        list.identity(),
        &d.device,
        d.signature_key.as_bytes(),
        d.number,
    );
    key.verify_strict(&m, &sig).is_ok()
}

/// A device that `after` (`before` changed in transit) approves, though
/// `before` did not, other than as the founder or with an approval that
/// really verifies; `None` if there is none or `after` does not decode.
fn unsigned_approval(user: &UserId, before: &DeviceList, after: &[u8]) -> Option<DeviceId> {
    let after = DeviceList::decode(after).ok()?;
    let was = approved(&identity::devices(user, before));
    let founder = founder(after.identity(), after.devices());
    approved(&identity::devices(user, &after))
        .difference(&was)
        .find(|id| {
            founder != Some(**id)
                && after
                    .get(id)
                    .is_none_or(|d| !really_approved(user, &after, d))
        })
        .copied()
}

/// The list with byte `at` (modulo its length) xor `mask` (not 0).
fn flip(bytes: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = bytes.to_vec();
    let at = at % out.len();
    out[at] ^= mask;
    out
}

/// Every byte of each real list, with a few masks: no device comes to
/// count without a valid signature.
#[test]
fn a_changed_byte_approves_nobody_unsigned() {
    let user = user();
    for l in common::signed_lists(&user) {
        let bytes = l.list.encode().unwrap();
        for mask in [0x01, 0x80, 0xff] {
            for at in 0..bytes.len() {
                let found = unsigned_approval(&user, &l.list, &flip(&bytes, at, mask));
                assert_eq!(found, None, "{}: byte {at} ^ {mask:#04x}", l.name);
            }
        }
    }
}

/// The rule's `approved` for a founder is `by: None` ("founded the
/// identity"), yet identity.rs reports a founder whose entry also carries an
/// approval as approved by that approval's device, whose signature it never
/// checked (a founder's approval cannot hold: nothing is chained before
/// it). Only the reported approver is wrong; the set of approved devices is
/// not.
#[test]
fn a_founder_is_approved_by_nobody() {
    let (a, x) = (dev(1), dev(2));
    let s = Signer {
        user: &user(),
        identity: a.founds(1),
    };
    let mut ea = a.entry(0, 1);
    ea.approval = Some(valise_directory::Approval {
        by: x.id,
        signature: SignatureKey(vec![0xff; 64]),
    });
    let list = s.list(vec![ea]);
    assert_eq!(
        statuses(&list).status(&a.id),
        Some(DeviceStatus::Approved { by: None })
    );
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn decode_never_panics(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = DeviceList::decode(&bytes);
    }

    /// Approvals signed with random bytes approve nobody: only the founder
    /// counts, if it is listed and not revoked.
    #[test]
    fn random_signatures_approve_nobody(
        devices in prop::collection::vec(unsigned(), 1..=8),
        numbers in numbers(),
        identity_key in 0..5usize,
        generation in 1..=3u32,
    ) {
        // Keys 0..4 repeat among devices; key 4 is nobody's.
        let key = |k: usize| Dev::new(100 + u8::try_from(k).unwrap()).public();
        let identity = Identity { key: SignatureKey(key(identity_key)), generation };
        let id = |i: &Index| dev(i.index(devices.len() + 1)).id;
        let n = devices.len();
        let entries: Vec<DeviceEntry> = devices.iter().enumerate().map(|(i, d)| {
            let number = rank(&numbers, n, i);
            let mut e = DeviceEntry::new(dev(i).id, key(d.key), number, d.generation);
            e.approval = d.approval.as_ref().map(|(by, sig)| valise_directory::Approval {
                by: id(by),
                signature: SignatureKey(sig.clone()),
            });
            e.revocation = d.revocation.as_ref().map(|(at, by)| valise_directory::Revocation {
                at: revoked_at(*at, number, n),
                by: by.as_ref().map(|(by, _)| id(by)),
                signature: by.as_ref().map(|(_, sig)| SignatureKey(sig.clone())),
            });
            e
        }).collect();
        let founder = founder(&identity, &entries)
            .filter(|f| entries.iter().any(|e| e.device == *f && e.revocation.is_none()));
        let s = statuses(&DeviceList::new(identity, entries).unwrap());
        prop_assert_eq!(approved(&s), founder.into_iter().collect::<BTreeSet<_>>());
        for (id, (_, status)) in &s.devices {
            if let DeviceStatus::Revoked { by } = status {
                prop_assert_eq!(*by, None, "{} revoked by a random signature", id);
            }
        }
    }

    /// A chain where each device is approved by one enrolled before it:
    /// every device counts.
    #[test]
    fn a_chain_of_real_approvals_approves_every_device(
        approvers in prop::collection::vec(any::<Index>(), 0..8),
        generation in 1..=3u32,
    ) {
        let user = user();
        let s = Signer { user: &user, identity: dev(0).founds(generation) };
        let number = |i: usize| i as u64;
        let mut entries = vec![dev(0).entry(number(0), generation)];
        for (i, by) in approvers.iter().enumerate().map(|(i, by)| (i + 1, by)) {
            let by = dev(by.index(i));
            let mut e = dev(i).entry(number(i), generation);
            s.approve(&mut e, by.id, &by.key);
            entries.push(e);
        }
        let got = statuses(&s.list(entries.clone()));
        for e in &entries {
            let by = e.approval.as_ref().map(|ap| ap.by);
            prop_assert_eq!(got.status(&e.device), Some(DeviceStatus::Approved { by }));
        }
    }

    /// Real and forged approvals and revocations, older generations, any
    /// order of enrolment: the statuses are the reference's.
    #[test]
    fn statuses_follow_the_rule(
        devices in prop::collection::vec(signed(), 1..=8),
        numbers in numbers(),
        founder in any::<Index>(),
        generation in 1..=3u32,
    ) {
        let user = user();
        let n = devices.len();
        let founder = founder.index(n);
        let s = Signer { user: &user, identity: dev(founder).founds(generation) };
        let mut model = Model {
            identity: s.identity.clone(),
            entries: Vec::new(),
            real_approval: Vec::new(),
            real_revocation: Vec::new(),
        };
        for (i, d) in devices.iter().enumerate() {
            let number = rank(&numbers, n, i);
            let mut e = dev(i).entry(number, d.generation.min(generation));
            // A founder may carry an approval too: it counts for nothing.
            if let Some((by, real)) = d.approval {
                let by = by.index(n);
                s.approve(&mut e, dev(by).id, &signing_key(by, real).key);
            }
            if let Some((at, by)) = d.revocation {
                let by = by.map(|(by, real)| (by.index(n), real));
                let key = by.map(|(by, real)| (dev(by).id, signing_key(by, real).key));
                let at = revoked_at(at, number, n);
                s.revoke(&mut e, at, key.as_ref().map(|(id, key)| (*id, key)));
            }
            model.real_approval.push(d.approval.is_some_and(|(_, real)| real));
            model.real_revocation.push(d.revocation.is_some_and(|(_, by)| by.is_some_and(|(_, real)| real)));
            model.entries.push(e);
        }
        model.check()?;
    }

    /// Any byte of a real list changed, any way: no device comes to count
    /// without a valid signature.
    #[test]
    fn a_changed_list_approves_nobody_unsigned(at in any::<usize>(), mask in 1..=255u8) {
        let user = user();
        for l in common::signed_lists(&user) {
            let bytes = flip(&l.list.encode().unwrap(), at, mask);
            prop_assert_eq!(unsigned_approval(&user, &l.list, &bytes), None, "{}", l.name);
        }
    }
}
