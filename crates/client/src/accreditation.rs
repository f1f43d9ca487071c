//! Who may read a marked letter (issue 11), with no I/O: a device is
//! accredited for a label when its user's verified directory entry holds
//! an attestation that
//!
//! - verifies under the accreditation authority key this device pinned at
//!   enrolment (never a key the server names later),
//! - names that user, and that device or none (all the user's devices),
//! - was issued (up to a few minutes of clock skew) and has not expired
//!   at the time of the check,
//! - carries a label that dominates the letter's ([`valise_proto::marking`]).
//!
//! TLP:CLEAR and TLP:GREEN take no accreditation (`Label::needs_accreditation`).
//!
//! Attestations are verified once and remembered by their bytes, and each
//! user's list is kept until the directory shows a new one, so checking a
//! conversation of 1,000 devices again costs lookups only
//! (docs/BENCHMARKS.md, "Issue 11: markings"). The first check of a large
//! conversation is mostly Ed25519 signatures: [`Clearances::learn`] spreads
//! them over the machine's cores.

use std::collections::HashMap;
use valise_proto::attestation::{Accreditation, AuthorityKey, UnverifiedAttestation};
use valise_proto::{DeviceAddress, Label, UserId};

/// Why a device is not accredited for a label; of several reasons, the
/// most telling (the greatest).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Lack {
    /// The user's entry holds no attestation at all.
    NoAttestation,
    /// Only attestations that do not verify under the pinned authority key
    /// (signed by another key — the server's? — or malformed).
    NotSigned,
    /// Only attestations signed for another user (moved by the server).
    OtherUser,
    /// Only attestations for a label that does not dominate the letter's.
    LowerLabel,
    /// Only attestations for other devices of the user.
    OtherDevice,
    /// Only attestations not issued yet.
    NotYetIssued,
    /// Only expired attestations (an old one replayed).
    Expired,
    /// This device pinned no accreditation authority: nobody is accredited.
    NoAuthority,
}

impl Lack {
    pub fn describe(self) -> &'static str {
        match self {
            Self::NoAttestation => "holds no accreditation attestation",
            Self::NotSigned => {
                "holds only attestations not signed by the pinned accreditation authority"
            }
            Self::OtherUser => "holds only attestations signed for another user",
            Self::LowerLabel => "is accredited only for lower markings",
            Self::OtherDevice => "is accredited only on other devices of the user",
            Self::NotYetIssued => "holds only attestations issued in the future",
            Self::Expired => "holds only expired attestations",
            Self::NoAuthority => "cannot be checked: this device pinned no accreditation authority",
        }
    }
}

/// Most attestations remembered; past it the memory starts over.
const MAX_REMEMBERED: usize = 100_000;

/// Fewest attestations worth a thread of their own (a signature takes
/// tens of microseconds, a thread about as much to start).
const MIN_PER_THREAD: usize = 16;

/// The claims of an attestation that verifies under `authority`.
fn verify(bytes: &[u8], authority: &AuthorityKey) -> Option<Accreditation> {
    UnverifiedAttestation::decode(bytes)
        .and_then(|a| a.verify(authority))
        .ok()
}

/// The pinned authority, the attestations verified under it, and each
/// user's attestations as their verified directory entry last showed them.
#[derive(Default)]
pub struct Clearances {
    authority: Option<AuthorityKey>,
    /// By bytes; `None`: does not verify.
    verified: HashMap<Vec<u8>, Option<Accreditation>>,
    lists: HashMap<UserId, Vec<Vec<u8>>>,
}

impl Clearances {
    pub fn new(authority: Option<AuthorityKey>) -> Self {
        Self {
            authority,
            ..Self::default()
        }
    }

    /// `user`'s attestations as remembered, if they are.
    pub fn list(&self, user: &UserId) -> Option<&[Vec<u8>]> {
        self.lists.get(user).map(Vec::as_slice)
    }

    /// Remembers `user`'s attestations (from a verified directory entry).
    pub fn set_list(&mut self, user: &UserId, attestations: Vec<Vec<u8>>) {
        if self.lists.len() >= MAX_REMEMBERED {
            self.lists.clear();
        }
        self.lists.insert(user.clone(), attestations);
    }

    /// Forgets `user`'s list (the directory showed a new one), or every
    /// list (`None`: after a rollback).
    pub fn forget(&mut self, user: Option<&UserId>) {
        match user {
            Some(u) => {
                self.lists.remove(u);
            }
            None => self.lists.clear(),
        }
    }

    /// Verifies and remembers `fresh` (attestations not remembered yet),
    /// on every core when there are enough of them to pay for the threads.
    /// Each keeps `verify_strict`: no batch verification, whose cofactored
    /// equation accepts signatures that strict verification refuses.
    fn learn(&mut self, authority: &AuthorityKey, mut fresh: Vec<Vec<u8>>) {
        fresh.sort_unstable();
        fresh.dedup();
        if fresh.is_empty() {
            return;
        }
        let threads = std::thread::available_parallelism()
            .map_or(1, std::num::NonZero::get)
            .min(fresh.len() / MIN_PER_THREAD)
            .max(1);
        let verify = |part: &[Vec<u8>]| -> Vec<Option<Accreditation>> {
            part.iter().map(|b| verify(b, authority)).collect()
        };
        let results = if threads == 1 {
            verify(&fresh)
        } else {
            std::thread::scope(|s| {
                let mut parts = fresh.chunks(fresh.len().div_ceil(threads));
                // This thread takes the first part while the others run.
                let first = parts.next().unwrap_or_default();
                let others: Vec<_> = parts.map(|p| s.spawn(move || verify(p))).collect();
                let mut all = verify(first);
                for h in others {
                    // A panic in a verifier is a bug: let it surface.
                    all.extend(h.join().unwrap_or_else(|p| std::panic::resume_unwind(p)));
                }
                all
            })
        };
        self.verified.extend(fresh.into_iter().zip(results));
    }

    /// Whether `device` is accredited for `label` at `now_s` by one of
    /// its user's `attestations` (the unit tests' view of one device; the
    /// engine judges rosters with [`Clearances::lacking`]).
    #[cfg(test)]
    pub fn check(
        &mut self,
        device: &DeviceAddress,
        attestations: &[Vec<u8>],
        label: &Label,
        now_s: i64,
    ) -> Result<(), Lack> {
        if !label.needs_accreditation() {
            return Ok(());
        }
        let Some(authority) = self.authority else {
            return Err(Lack::NoAuthority);
        };
        self.make_room(attestations.len());
        let fresh = self.unknown(attestations.iter());
        self.learn(&authority, fresh);
        self.judge(device, attestations, label, now_s)
    }

    /// The first of `devices` not accredited for `label` at `now_s` by
    /// their user's remembered list ([`Clearances::set_list`]), and why
    /// (the unit tests' view of [`Clearances::lacking`]).
    #[cfg(test)]
    pub fn check_all(
        &mut self,
        devices: &[&DeviceAddress],
        label: &Label,
        now_s: i64,
    ) -> Result<(), (DeviceAddress, Lack)> {
        match self.lacking(devices, label, now_s, true).into_iter().next() {
            Some(lacking) => Err(lacking),
            None => Ok(()),
        }
    }

    /// The devices of `devices` not accredited for `label` at `now_s` by
    /// their user's remembered list ([`Clearances::set_list`]), and why;
    /// with `first`, only the first. Every signature is verified before
    /// the first device is judged: together, they go on every core.
    pub fn lacking(
        &mut self,
        devices: &[&DeviceAddress],
        label: &Label,
        now_s: i64,
        first: bool,
    ) -> Vec<(DeviceAddress, Lack)> {
        if !label.needs_accreditation() {
            return Vec::new();
        }
        let Some(authority) = self.authority else {
            let take = if first { 1 } else { devices.len() };
            return devices
                .iter()
                .take(take)
                .map(|d| ((*d).clone(), Lack::NoAuthority))
                .collect();
        };
        let coming = devices
            .iter()
            .filter_map(|d| self.lists.get(&d.user))
            .map(Vec::len)
            .sum();
        self.make_room(coming);
        let fresh = self.unknown(
            devices
                .iter()
                .filter_map(|d| self.lists.get(&d.user))
                .flatten(),
        );
        self.learn(&authority, fresh);
        let mut lacking = Vec::new();
        for d in devices {
            let list = self.lists.get(&d.user).map_or(&[][..], Vec::as_slice);
            if let Err(lack) = self.judge(d, list, label, now_s) {
                lacking.push(((*d).clone(), lack));
                if first {
                    break;
                }
            }
        }
        lacking
    }

    /// Starts the memory of verifications over if `coming` more would
    /// overflow it (before a check: what it remembers stays until it ends).
    fn make_room(&mut self, coming: usize) {
        if self.verified.len() + coming > MAX_REMEMBERED {
            self.verified.clear();
        }
    }

    /// Those of `attestations` not remembered yet.
    fn unknown<'a>(&self, attestations: impl Iterator<Item = &'a Vec<u8>>) -> Vec<Vec<u8>> {
        attestations
            .filter(|b| !self.verified.contains_key(*b))
            .cloned()
            .collect()
    }

    /// The check of [`Clearances::check`] on remembered verifications (an
    /// attestation not remembered counts as not signed).
    fn judge(
        &self,
        device: &DeviceAddress,
        attestations: &[Vec<u8>],
        label: &Label,
        now_s: i64,
    ) -> Result<(), Lack> {
        let mut lack = Lack::NoAttestation;
        for bytes in attestations {
            let claims = self.verified.get(bytes).and_then(Option::as_ref);
            let why = match claims {
                None => Lack::NotSigned,
                Some(a) if a.covers(&device.user, &device.device, label, now_s) => return Ok(()),
                Some(a) if a.user != device.user => Lack::OtherUser,
                Some(a) if !a.label.dominates(label) => Lack::LowerLabel,
                Some(a) if a.device.is_some_and(|d| d != device.device) => Lack::OtherDevice,
                Some(a) if a.not_after_s < now_s => Lack::Expired,
                Some(_) => Lack::NotYetIssued,
            };
            lack = lack.max(why);
        }
        Err(lack)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use valise_proto::DeviceId;
    use valise_proto::attestation::AuthoritySecret;

    const NOW: i64 = 1_800_000_000;

    fn alice(n: u8) -> DeviceAddress {
        DeviceAddress::new(
            UserId::parse("alice@mfa.example").unwrap(),
            DeviceId::from_bytes([n; 8]),
        )
    }

    fn attest(
        so: &AuthoritySecret,
        user: &str,
        label: &str,
        until: i64,
        device: Option<u8>,
    ) -> Vec<u8> {
        Accreditation {
            device: device.map(|n| DeviceId::from_bytes([n; 8])),
            issued_at_s: NOW - 10,
            label: Label::parse(label).unwrap(),
            not_after_s: until,
            user: UserId::parse(user).unwrap(),
        }
        .sign(so)
        .unwrap()
    }

    #[test]
    fn accredited_only_by_a_valid_attestation_under_the_pinned_key() {
        let so = AuthoritySecret::generate();
        let server = AuthoritySecret::generate();
        let restricted = Label::parse("EU RESTRICTED").unwrap();
        let limite = Label::parse("LIMITE").unwrap();
        let mut c = Clearances::new(Some(so.public()));
        let good = attest(&so, "alice@mfa.example", "EU RESTRICTED", NOW + 100, None);
        assert_eq!(
            c.check(&alice(1), std::slice::from_ref(&good), &restricted, NOW),
            Ok(())
        );
        assert_eq!(
            c.check(&alice(1), std::slice::from_ref(&good), &limite, NOW),
            Ok(())
        );
        let red = Label::parse("TLP:RED").unwrap();
        assert_eq!(
            c.check(&alice(1), std::slice::from_ref(&good), &red, NOW),
            Err(Lack::LowerLabel)
        );
        assert_eq!(
            c.check(&alice(1), &[], &restricted, NOW),
            Err(Lack::NoAttestation)
        );
        let forged = attest(
            &server,
            "alice@mfa.example",
            "EU RESTRICTED",
            NOW + 100,
            None,
        );
        assert_eq!(
            c.check(&alice(1), std::slice::from_ref(&forged), &restricted, NOW),
            Err(Lack::NotSigned)
        );
        let old = attest(&so, "alice@mfa.example", "EU RESTRICTED", NOW - 1, None);
        assert_eq!(
            c.check(&alice(1), &[forged, old], &restricted, NOW),
            Err(Lack::Expired)
        );
        let bobs = attest(&so, "bob@mfa.example", "EU RESTRICTED", NOW + 100, None);
        assert_eq!(
            c.check(&alice(1), &[bobs], &restricted, NOW),
            Err(Lack::OtherUser)
        );
        let phone = attest(
            &so,
            "alice@mfa.example",
            "EU RESTRICTED",
            NOW + 100,
            Some(2),
        );
        assert_eq!(
            c.check(&alice(2), std::slice::from_ref(&phone), &restricted, NOW),
            Ok(())
        );
        assert_eq!(
            c.check(&alice(1), &[phone], &restricted, NOW),
            Err(Lack::OtherDevice)
        );
        // Valid yesterday, expired today: expired means not accredited.
        assert_eq!(
            c.check(&alice(1), &[good], &restricted, NOW + 101),
            Err(Lack::Expired)
        );
        let mut unpinned = Clearances::new(None);
        assert_eq!(
            unpinned.check(&alice(1), &[], &limite, NOW),
            Err(Lack::NoAuthority)
        );
        // TLP:GREEN is for anyone: no attestation, no authority needed.
        let green = Label::parse("TLP:GREEN").unwrap();
        assert_eq!(unpinned.check(&alice(1), &[], &green, NOW), Ok(()));
    }

    /// A roster checked at once, its signatures verified on several
    /// threads, judges each device as one check would: the first device
    /// whose user holds only a forged attestation is named.
    #[test]
    fn a_roster_at_once_names_the_first_unaccredited_device() {
        let so = AuthoritySecret::generate();
        let server = AuthoritySecret::generate();
        let label = Label::parse("EU RESTRICTED").unwrap();
        let mut c = Clearances::new(Some(so.public()));
        let users: Vec<DeviceAddress> = (0..4 * MIN_PER_THREAD)
            .map(|i| {
                let user = UserId::parse(&format!("user{i}@mfa.example")).unwrap();
                let signer = if i == 2 * MIN_PER_THREAD + 1 {
                    &server
                } else {
                    &so
                };
                let at = attest(signer, user.as_str(), "EU RESTRICTED", NOW + 100, None);
                c.set_list(&user, vec![at]);
                DeviceAddress::new(user, DeviceId::from_bytes([1; 8]))
            })
            .collect();
        let devices: Vec<&DeviceAddress> = users.iter().collect();
        let forged = users[2 * MIN_PER_THREAD + 1].clone();
        assert_eq!(
            c.check_all(&devices, &label, NOW),
            Err((forged.clone(), Lack::NotSigned))
        );
        // Again, from memory; and without the forger, all pass.
        assert_eq!(
            c.check_all(&devices, &label, NOW),
            Err((forged.clone(), Lack::NotSigned))
        );
        let honest: Vec<&DeviceAddress> = devices.into_iter().filter(|d| **d != forged).collect();
        assert_eq!(c.check_all(&honest, &label, NOW), Ok(()));
        assert_eq!(
            c.check_all(&honest, &label, NOW + 101),
            Err((honest[0].clone(), Lack::Expired))
        );
    }

    /// The figure in docs/BENCHMARKS.md ("Issue 11: markings"): the check
    /// of a 1,000-device conversation (500 users with two devices each),
    /// cold (every attestation verified) and warm (remembered).
    /// `cargo test --release -p valise-client --lib accreditation::tests::bench -- --ignored --nocapture`
    #[test]
    #[ignore]
    fn bench_a_thousand_devices() {
        let so = AuthoritySecret::generate();
        let label = Label::parse("EU RESTRICTED").unwrap();
        let users: Vec<(Vec<DeviceAddress>, Vec<Vec<u8>>)> = (0..500)
            .map(|i| {
                let user = format!("user{i}@mfa.example");
                let devices = (0..2u8)
                    .map(|d| {
                        DeviceAddress::new(
                            UserId::parse(&user).unwrap(),
                            DeviceId::from_bytes([d; 8]),
                        )
                    })
                    .collect();
                (
                    devices,
                    vec![attest(&so, &user, "EU RESTRICTED", NOW + 100, None)],
                )
            })
            .collect();
        // As the engine checks a roster: each user's list remembered, then
        // every device at once.
        let devices: Vec<&DeviceAddress> = users.iter().flat_map(|(d, _)| d).collect();
        let run = |c: &mut Clearances| {
            let start = std::time::Instant::now();
            for (devices, at) in &users {
                if c.list(&devices[0].user).is_none() {
                    c.set_list(&devices[0].user, at.clone());
                }
            }
            assert_eq!(c.check_all(&devices, &label, NOW), Ok(()));
            start.elapsed()
        };
        // Where the cold time goes: decoding (with the one-encoding checks)
        // and the signatures.
        let start = std::time::Instant::now();
        let decoded: Vec<_> = users
            .iter()
            .map(|(_, at)| UnverifiedAttestation::decode(&at[0]).unwrap())
            .collect();
        let decoding = start.elapsed();
        let start = std::time::Instant::now();
        for a in decoded {
            a.verify(&so.public()).unwrap();
        }
        println!(
            "500 attestations: decode {decoding:?}, verify {:?}",
            start.elapsed()
        );
        let mut c = Clearances::new(Some(so.public()));
        let cold = run(&mut c);
        let warm = (0..20).map(|_| run(&mut c)).min().unwrap();
        println!("1000 devices: cold {cold:?}, warm {warm:?}");
    }
}
