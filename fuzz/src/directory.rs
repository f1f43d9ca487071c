//! What the key directory's targets check, on what a client reads from its
//! server. Kept apart from `proto.rs` because it needs valise-directory,
//! which valise-proto's tests cannot depend on; the seeds are replayed (and
//! generated) by `crates/directory/tests/fuzz_seeds.rs`, which includes
//! this file.
//!
//! # `directory_proofs`
//! The roots and proofs (`crates/client/src/transparency.rs`, `audit.rs`).
//! An input is
//!
//! ```text
//! root₁ (SignedRoot::to_bytes, 168) || root₂ (168) || proof bytes
//! ```
//! the root a client accepted before (its ledger), the root the server now
//! shows, and the proof that came with it. The proof bytes go through every
//! check a client makes on what the server sends: the ledger moving from
//! root₁ to root₂ (with the bytes as the append-only proof), and a lookup
//! and a history proof of [`USER`] against root₂.
//!
//! Each input runs twice: with the roots as sent, verified under the fixed
//! directory key, and re-signed with that key — the server holds its key,
//! so whatever epoch, hash and VRF key it signs, the proofs behind them must
//! still be checked safely (and the fuzzer can change a root without
//! forging a signature). A panic, an allocation beyond libFuzzer's limit or
//! a refusal that is not evidence ([`DirectoryError::is_evidence`]) is a
//! finding.
//!
//! # `directory_entry`
//! A user's published device list ([`DeviceList`], the value a proof
//! proves), as [`USER`]'s. The server writes every byte of it, signatures
//! included, but cannot make its own device count: see
//! [`valise_directory::identity`] for the rule. What decodes must be its own
//! canonical encoding, and [`identity::devices`] must give each listed
//! device one status that the rule allows. The list then runs again with
//! every signature in it replaced by one that no key verifies: only the
//! founder may come out approved, and nobody revoked by a device. A panic
//! or a refusal that is not evidence is a finding.
#![forbid(unsafe_code)]

use valise_directory::identity::{self, DeviceStatus, Devices};
use valise_directory::root::SIGNED_ROOT_LEN;
use valise_directory::{
    DeviceEntry, DeviceList, DirectoryError, RootLedger, RootSigner, SignatureKey, SignedRoot,
    Step, VerifiedRoot, verify_history, verify_lookup, verify_root,
};
use valise_proto::{DeviceId, UserId};

/// The directory targets, by name: `fuzz_targets/<name>.rs`,
/// `fuzz/seeds/<name>/`.
pub const TARGETS: &[&str] = &["directory_proofs", "directory_entry"];

/// Runs the check of target `name`; `None` for an unknown name.
pub fn run(name: &str, data: &[u8]) -> Option<usize> {
    Some(match name {
        "directory_proofs" => directory_proofs(data),
        "directory_entry" => directory_entry(data),
        _ => return None,
    })
}

/// Seed of the directory signing key the target (and its seeds) use. A
/// test key: the harness re-signs roots with it, as a hostile server would.
pub const DIRECTORY_SEED: [u8; 32] = [7; 32];

/// Seed of the VRF key of the directory the seeds were made from.
pub const VRF_SEED: [u8; 32] = [9; 32];

/// The user whose lookup and history proofs are checked, and whose devices
/// a device list lists (approvals are signed for one user).
pub const USER: &str = "alice@mfa.example";

/// A user never published: a proof accepted for [`USER`] must not be
/// accepted for them.
pub const STRANGER: &str = "mallory@mfa.example";

/// Roots and proofs a client reads from its server: returns how many proofs
/// (append-only, lookup, history) are accepted behind roots that verify as
/// sent, which is what the client would accept. Re-signed roots are checked
/// for safety only and not counted.
pub fn directory_proofs(data: &[u8]) -> usize {
    // The root parser sees every length, not only 168.
    if let Err(e) = SignedRoot::from_bytes(data) {
        evidence(&e);
    }
    let Some((r1, rest)) = data.split_first_chunk::<SIGNED_ROOT_LEN>() else {
        return 0;
    };
    let Some((r2, proof)) = rest.split_first_chunk::<SIGNED_ROOT_LEN>() else {
        return 0;
    };
    RUNTIME.with(|rt| rt.block_on(check(r1, r2, proof)))
}

thread_local! {
    /// akd's tree code is async (and may spawn); the client runs it on
    /// tokio, so does the target. One runtime per thread: building one per
    /// input would cost more than most inputs.
    static RUNTIME: tokio::runtime::Runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a tokio runtime");
}

async fn check(r1: &[u8], r2: &[u8], proof: &[u8]) -> usize {
    let signer = RootSigner::from_seed(&DIRECTORY_SEED);
    let key = signer.public_key();
    let (p1, p2) = match (SignedRoot::from_bytes(r1), SignedRoot::from_bytes(r2)) {
        (Ok(p1), Ok(p2)) => (p1, p2),
        (a, b) => {
            // Both are 168 bytes: only the domain prefix can be wrong.
            [a.err(), b.err()].iter().flatten().for_each(evidence);
            return 0;
        }
    };
    let as_sent = (verify_root(&p1, &key), verify_root(&p2, &key));
    let accepted = match &as_sent {
        (Ok(old), Ok(new)) => proofs(old, new, proof).await,
        (a, b) => {
            for e in [a.as_ref().err(), b.as_ref().err()].into_iter().flatten() {
                assert!(matches!(e, DirectoryError::BadSignature), "{e:?}");
            }
            0
        }
    };
    // Ed25519 signatures are deterministic: a root that verified as sent
    // re-signs to itself, and need not be checked again.
    let resign = |r: &SignedRoot| {
        let again = signer.sign(
            r.epoch(),
            *r.root_hash(),
            r.timestamp_ms(),
            *r.vrf_public_key(),
        );
        verify_root(&again, &key).expect("a root signed with the key verifies under it")
    };
    if as_sent.0.is_err() || as_sent.1.is_err() {
        proofs(&resign(&p1), &resign(&p2), proof).await;
    }
    accepted
}

/// What a client does with a root it is shown after `old` (the ledger's
/// root) and the proof bytes that came with it; how many proofs it accepts.
async fn proofs(old: &VerifiedRoot, new: &VerifiedRoot, proof: &[u8]) -> usize {
    let mut accepted = 0;
    let user = UserId::parse(USER).expect("USER is a user id");
    let stranger = UserId::parse(STRANGER).expect("STRANGER is a user id");

    // `Client::accept_root`: the ledger moves forward with an append-only
    // proof, or refuses with evidence.
    let mut ledger = RootLedger::new();
    assert_eq!(ledger.accept(old).expect("a first root"), Step::First);
    match ledger.check(new) {
        Ok(Step::Forward { from_epoch }) => {
            assert!(from_epoch == old.epoch() && new.epoch() > from_epoch);
            match ledger.advance(new, Some(proof)).await {
                Ok(step) => {
                    assert_eq!(step, Step::Forward { from_epoch });
                    assert_eq!(ledger.last(), Some(new.signed()));
                    assert_eq!(old.signed().vrf_public_key(), new.signed().vrf_public_key());
                    accepted += 1;
                }
                Err(e) => {
                    evidence(&e);
                    assert_eq!(ledger.last(), Some(old.signed()), "refused, yet moved");
                }
            }
        }
        Ok(step) => {
            assert_eq!(step, Step::Same);
            assert_eq!(ledger.accept(new).expect("the same root again"), Step::Same);
        }
        Err(e) => evidence(&e),
    }

    // `Client::prove_user`.
    match verify_lookup(new, &user, proof) {
        Ok(found) => {
            assert!(
                found.epoch <= new.epoch() && found.version >= 1,
                "{found:?}"
            );
            round_trips(&found.devices);
            assert!(
                verify_lookup(new, &stranger, proof).is_err(),
                "one lookup proof proves two users"
            );
            accepted += 1;
        }
        Err(e) => evidence(&e),
    }

    // `Client::check_own_history`.
    match verify_history(new, &user, proof) {
        Ok(versions) => {
            assert!(!versions.is_empty(), "a complete history of nothing");
            assert!(
                versions.windows(2).all(|w| w[0].version < w[1].version),
                "versions out of order or repeated"
            );
            for v in &versions {
                assert!(v.epoch <= new.epoch() && v.version >= 1, "{v:?}");
                round_trips(&v.devices);
            }
            accepted += 1;
        }
        Err(e) => evidence(&e),
    }
    accepted
}

/// A proven device list is the canonical encoding of itself (the client
/// hashes the encoding into safety codes).
fn round_trips(list: &DeviceList) {
    let bytes = list.encode().expect("a proven list encodes");
    assert_eq!(&DeviceList::decode(&bytes).expect("and decodes"), list);
}

/// A user's device list as the server publishes it: returns 1 if it decodes
/// (0 otherwise), after checking what a client derives from it.
pub fn directory_entry(data: &[u8]) -> usize {
    let list = match DeviceList::decode(data) {
        Ok(list) => list,
        Err(e) => {
            evidence(&e);
            return 0;
        }
    };
    // Safety codes and the directory hash these bytes: one list, one encoding.
    assert_eq!(list.encode().expect("a decoded list encodes"), data);
    let user = UserId::parse(USER).expect("USER is a user id");
    follows_the_rule(&list, &identity::devices(&user, &list));

    let forged = with_forged_signatures(&list);
    let statuses = identity::devices(&user, &forged);
    follows_the_rule(&forged, &statuses);
    for (id, (entry, status)) in &statuses.devices {
        match status {
            DeviceStatus::Approved { .. } => {
                assert!(
                    founds(&forged, entry),
                    "{id} approved by a forged signature"
                );
            }
            DeviceStatus::Revoked { by } => {
                assert_eq!(*by, None, "{id} revoked by a forged signature");
            }
            DeviceStatus::Pending => {}
        }
    }
    1
}

/// An Ed25519 signature that no key verifies: its scalar half is not below
/// the group order, which verification refuses before it uses the key.
const FORGED_SIGNATURE: [u8; 64] = [0xff; 64];

/// `list` with every approval and revocation signature forged.
fn with_forged_signatures(list: &DeviceList) -> DeviceList {
    let forged = || SignatureKey(FORGED_SIGNATURE.to_vec());
    let devices = list.devices().iter().cloned().map(|mut d| {
        if let Some(ap) = &mut d.approval {
            ap.signature = forged();
        }
        if let Some(sig) = d.revocation.as_mut().and_then(|rv| rv.signature.as_mut()) {
            *sig = forged();
        }
        d
    });
    DeviceList::new(list.identity().clone(), devices.collect())
        .expect("the same ids and numbers, with signatures of a valid size")
}

/// Whether `d` founded the list's identity: the lowest-numbered device of
/// the current generation with the identity key.
fn founds(list: &DeviceList, d: &DeviceEntry) -> bool {
    let identity = list.identity();
    list.devices()
        .iter()
        .filter(|e| e.generation == identity.generation && e.signature_key == identity.key)
        .min_by_key(|e| e.number)
        .is_some_and(|founder| founder.device == d.device)
}

/// Every listed device has exactly one status, and each status is one the
/// rule of `valise_directory::identity` can give: revoked exactly when
/// revoked or of an older generation; approved as the founder, or with an
/// approval by a device of the current generation whose own chain holds
/// (approved, or revoked by now), enrolled before it and not revoked before
/// it was enrolled; revoked by a device only if that device's chain holds.
fn follows_the_rule(list: &DeviceList, statuses: &Devices) {
    assert_eq!(&statuses.identity, list.identity());
    assert_eq!(statuses.devices.len(), list.devices().len());
    let current = list.identity().generation;
    // A device whose chain holds: of the current generation, not pending.
    let chained = |id: &DeviceId| {
        list.get(id).is_some_and(|e| e.generation == current)
            && statuses
                .status(id)
                .is_some_and(|s| s != DeviceStatus::Pending)
    };
    for d in list.devices() {
        let Some((entry, status)) = statuses.devices.get(&d.device) else {
            panic!("{} listed without a status", d.device);
        };
        assert_eq!(entry, d);
        let revoked = d.generation != current || d.revocation.is_some();
        assert_eq!(
            matches!(status, DeviceStatus::Revoked { .. }),
            revoked,
            "{status:?}"
        );
        match *status {
            // A founder counts by founding alone, approved by nobody.
            DeviceStatus::Approved { by } if founds(list, d) => {
                assert_eq!(by, None, "a founder is approved by nobody");
            }
            DeviceStatus::Approved { by: None } => panic!("{} approved by nobody", d.device),
            DeviceStatus::Approved { by: Some(by) } => {
                let ap = d
                    .approval
                    .as_ref()
                    .expect("approved by a device: has an approval");
                assert_eq!(ap.by, by);
                let approver = list.get(&by).expect("approved by a listed device");
                assert!(chained(&by) && approver.number < d.number, "{status:?}");
                assert!(
                    approver
                        .revocation
                        .as_ref()
                        .is_none_or(|rv| d.number < rv.at)
                );
            }
            DeviceStatus::Revoked { by: Some(by) } => {
                let rv = d
                    .revocation
                    .as_ref()
                    .expect("revoked by a device: has a revocation");
                assert!(rv.by == Some(by) && rv.signature.is_some() && chained(&by));
            }
            DeviceStatus::Revoked { by: None } | DeviceStatus::Pending => {}
        }
    }
}

/// Refusals of outside bytes are evidence against the server, never an
/// internal or storage error (the client alerts on evidence).
fn evidence(e: &DirectoryError) {
    assert!(e.is_evidence(), "not evidence: {e:?}");
}
