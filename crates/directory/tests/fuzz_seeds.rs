//! The key directory's fuzz seeds (`fuzz/seeds/directory_proofs/`,
//! `fuzz/seeds/directory_entry/`) replayed on every `cargo test` through the
//! targets' own checks (`fuzz/src/directory.rs`, included here). It lives
//! here, not with valise-proto's replay of the other targets, because the
//! checks need this crate. A valid seed must be accepted, a `bad-*` seed
//! must not; generated corpora (`fuzz/corpus/<target>/`, not committed) are
//! replayed for no panic only.
//!
//! The seeds come from a real directory and real device lists with fixed
//! keys: `cargo test -p valise-directory --test fuzz_seeds -- --ignored
//! write_seeds` writes them again. The property tests below check what the
//! proof seeds show on many mutations: a changed proof or root is refused
//! with evidence, never accepted (`identity_props.rs` does the same for
//! device lists).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../../fuzz/src/directory.rs"]
mod checks;
mod common;
#[path = "../../proto/tests/seed_replay/mod.rs"]
mod seed_replay;

/// Only for its list of the targets it leaves to this test.
#[allow(dead_code)]
#[path = "../../../fuzz/src/proto.rs"]
mod proto_checks;

use proptest::prelude::*;
use seed_replay::{assert_every_target_is_fuzzed, files, fuzz_dir, replay_seeds};
use std::sync::{Arc, OnceLock};
use valise_directory::*;
use valise_proto::{DeviceId, UserId};

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// A list whose first device founded the identity.
fn list(ids: &[u8]) -> DeviceList {
    let identity = Identity {
        key: SignatureKey(vec![ids[0]; 32]),
        generation: 1,
    };
    DeviceList::new(
        identity,
        ids.iter()
            .enumerate()
            .map(|(i, &n)| DeviceEntry::new(DeviceId::from_bytes([n; 8]), vec![n; 32], i as u64, 1))
            .collect(),
    )
    .unwrap()
}

/// Roots and proofs of a real directory, under the target's fixed keys.
struct Fixture {
    /// Signed roots of epochs 0, 1 and 2.
    roots: [SignedRoot; 3],
    lookup: Proven,
    history: Proven,
    /// Append-only proofs from epoch 0 and from epoch 1 to epoch 2.
    audit_0_2: Vec<u8>,
    audit_1_2: Vec<u8>,
}

/// Epoch 1 publishes alice (one device) and bob; epoch 2 alice's second
/// device. Built on its own runtime: the checks run theirs.
fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        tokio::runtime::Runtime::new().unwrap().block_on(async {
            let storage = Arc::new(SqliteDirectoryStorage::in_memory().unwrap());
            storage
                .insert_secret_if_absent(VRF_SECRET_NAME, &checks::VRF_SEED)
                .unwrap();
            let signer = RootSigner::from_seed(&checks::DIRECTORY_SEED);
            let dir = Directory::open(storage, signer).await.unwrap();
            let alice = user(checks::USER);
            let r0 = dir.root().await.unwrap();
            let r1 = dir
                .publish(vec![
                    (alice.clone(), list(&[1])),
                    (user("bob@mfa.example"), list(&[2])),
                ])
                .await
                .unwrap();
            let r2 = dir.publish(vec![(alice.clone(), list(&[1, 3]))]).await;
            Fixture {
                roots: [r0, r1, r2.unwrap()],
                lookup: dir.lookup(&alice).await.unwrap(),
                history: dir.history(&alice).await.unwrap(),
                audit_0_2: dir.audit(0, 2).await.unwrap(),
                audit_1_2: dir.audit(1, 2).await.unwrap(),
            }
        })
    })
}

/// A fuzz input: `root₁ || root₂ || proof`.
fn input(old: &SignedRoot, new: &SignedRoot, proof: &[u8]) -> Vec<u8> {
    let mut out = old.to_bytes();
    out.extend_from_slice(&new.to_bytes());
    out.extend_from_slice(proof);
    out
}

/// The seeds, by file name: real proofs, and refusals of each kind.
fn seeds(f: &Fixture) -> Vec<(&'static str, Vec<u8>)> {
    let [r0, r1, r2] = &f.roots;
    let lookup = input(&f.lookup.root, &f.lookup.root, &f.lookup.proof);
    let mut flipped = f.lookup.proof.clone();
    let mid = flipped.len() / 2;
    flipped[mid] ^= 0x01;
    let mut forged = lookup.clone();
    // The last byte of root₂'s signature.
    forged[2 * root::SIGNED_ROOT_LEN - 1] ^= 0x01;
    vec![
        ("lookup.bin", lookup),
        (
            "history.bin",
            input(&f.history.root, &f.history.root, &f.history.proof),
        ),
        ("audit-0-2.bin", input(r0, r2, &f.audit_0_2)),
        ("audit-1-2.bin", input(r1, r2, &f.audit_1_2)),
        (
            "bad-lookup-flipped.bin",
            input(&f.lookup.root, &f.lookup.root, &flipped),
        ),
        ("bad-root-signature.bin", forged),
        ("bad-rollback.bin", input(r2, r1, &f.audit_1_2)),
        ("bad-root-only.bin", r2.to_bytes()),
    ]
}

/// Real device lists of [`checks::USER`] (`common::signed_lists`), and
/// lists that each break one rule of the encoding, by file name.
fn entry_seeds() -> Vec<(String, Vec<u8>)> {
    let lists = common::signed_lists(&user(checks::USER));
    let mut out: Vec<(String, Vec<u8>)> = lists
        .iter()
        .map(|l| (format!("{}.cbor", l.name), l.list.encode().unwrap()))
        .collect();
    let devices = &lists.iter().find(|l| l.name == "devices").unwrap().list;
    let encoded = devices.encode().unwrap();
    assert_eq!(Wire::of(devices).cbor(), encoded, "Wire is the encoding");
    let mut unsorted = Wire::of(devices);
    unsorted.d.reverse();
    let mut same_number = Wire::of(devices);
    same_number.d[1].number = same_number.d[0].number;
    let mut v1 = Wire::of(devices);
    v1.v = 1;
    out.extend([
        ("bad-unsorted.cbor".into(), unsorted.cbor()),
        ("bad-duplicate-number.cbor".into(), same_number.cbor()),
        ("bad-version-1.cbor".into(), v1.cbor()),
        (
            "bad-truncated.cbor".into(),
            encoded[..encoded.len() / 2].to_vec(),
        ),
        // Issue 11: a list carrying attestations (version 3); the
        // directory holds them as bytes, clients verify them.
        (
            "attested.cbor".into(),
            devices
                .clone()
                .with_attestations(vec![vec![0xd2; 48], vec![0x84; 64]])
                .unwrap()
                .encode()
                .unwrap(),
        ),
    ]);
    out
}

/// A device list's encoding field by field, so that a seed can break one
/// rule at a time (the crate's own envelope refuses to).
#[derive(serde::Serialize)]
struct Wire {
    v: u8,
    i: SignatureKey,
    g: u32,
    d: Vec<DeviceEntry>,
}

impl Wire {
    /// A list without attestations (version 2, as before them).
    fn of(list: &DeviceList) -> Self {
        Self {
            v: entry::ENTRY_VERSION - 1,
            i: list.identity().key.clone(),
            g: list.identity().generation,
            d: list.devices().to_vec(),
        }
    }

    fn cbor(&self) -> Vec<u8> {
        let mut out = Vec::new();
        ciborium::into_writer(self, &mut out).unwrap();
        out
    }
}

/// Writes a target's seeds (run by hand; the committed ones are replayed).
fn write_seeds_of<N: AsRef<str>>(target: &str, seeds: Vec<(N, Vec<u8>)>) {
    let dir = fuzz_dir().join("seeds").join(target);
    std::fs::create_dir_all(&dir).unwrap();
    for (name, bytes) in seeds {
        std::fs::write(dir.join(name.as_ref()), bytes).unwrap();
    }
}

#[test]
#[ignore = "writes fuzz/seeds/directory_proofs/"]
fn write_seeds() {
    write_seeds_of("directory_proofs", seeds(fixture()));
}

#[test]
#[ignore = "writes fuzz/seeds/directory_entry/"]
fn write_seeds_directory_entry() {
    write_seeds_of("directory_entry", entry_seeds());
}

#[test]
fn every_target_has_seeds_and_a_fuzz_target() {
    assert_eq!(checks::TARGETS, proto_checks::REPLAYED_BY_DIRECTORY);
    assert_every_target_is_fuzzed(checks::TARGETS);
}

#[test]
fn seeds_are_accepted_or_refused_as_named() {
    replay_seeds(checks::TARGETS, checks::run);
    // The valid seeds are real: their roots verify under the fixed key.
    let key = RootSigner::from_seed(&checks::DIRECTORY_SEED).public_key();
    let lookup = std::fs::read(fuzz_dir().join("seeds/directory_proofs/lookup.bin")).unwrap();
    let root = SignedRoot::from_bytes(&lookup[..root::SIGNED_ROOT_LEN]).unwrap();
    verify_root(&root, &key).unwrap();
}

/// The committed device-list seeds are what `write_seeds` writes (Ed25519
/// signatures are deterministic), and their devices get the statuses their
/// signatures say: the approvals in them are real.
#[test]
fn entry_seeds_are_real_lists() {
    let dir = fuzz_dir().join("seeds/directory_entry");
    for (name, bytes) in entry_seeds() {
        let committed = std::fs::read(dir.join(&name)).unwrap();
        assert!(committed == bytes, "{name}: run write_seeds again");
        assert_eq!(
            checks::directory_entry(&bytes),
            usize::from(!name.starts_with("bad-")),
            "{name}"
        );
    }
    let alice = user(checks::USER);
    for l in common::signed_lists(&alice) {
        let statuses = identity::devices(&alice, &l.list);
        assert_eq!(statuses.devices.len(), l.statuses.len(), "{}", l.name);
        for (device, status) in l.statuses {
            assert_eq!(
                statuses.status(&device),
                Some(status),
                "{}: {device}",
                l.name
            );
        }
    }
}

#[test]
fn generated_corpora_do_not_panic() {
    for target in checks::TARGETS {
        for input in files(&fuzz_dir().join("corpus").join(target)) {
            // A running fuzzer deletes the inputs it has reduced.
            let Ok(data) = std::fs::read(&input) else {
                continue;
            };
            // A panic names the input through the test's output.
            eprintln!("replaying {}", input.display());
            checks::run(target, &data).unwrap();
        }
    }
}

#[test]
fn checks_catch_what_they_promise() {
    // Each proof is accepted by its own check only, and each refusal kind
    // of the seeds is refused, from a freshly made directory.
    let expected = [
        ("lookup.bin", 1),
        ("history.bin", 1),
        ("audit-0-2.bin", 1),
        ("audit-1-2.bin", 1),
    ];
    for (name, bytes) in seeds(fixture()) {
        let want = expected
            .iter()
            .find(|(n, _)| *n == name)
            .map_or(0, |(_, w)| *w);
        assert_eq!(checks::directory_proofs(&bytes), want, "{name}");
    }
    assert_eq!(checks::run("no_such_target", b""), None);
}

/// A hostile server's root for a span of 2^63 epochs: refused without
/// building a list of every epoch in between (the audit check once
/// collected `old..new` into a vector before comparing).
#[test]
fn an_enormous_epoch_span_is_refused_cheaply() {
    let f = fixture();
    let signer = RootSigner::from_seed(&checks::DIRECTORY_SEED);
    let r2 = &f.roots[2];
    let far = signer.sign(
        u64::MAX,
        *r2.root_hash(),
        r2.timestamp_ms(),
        *r2.vrf_public_key(),
    );
    assert_eq!(
        checks::directory_proofs(&input(&f.roots[0], &far, &f.audit_0_2)),
        0
    );
}

/// What akd does not check, pinned so that a change shows: its root hash
/// does not commit to the epoch number, so a proof verifies under a root
/// signed for a later epoch with the same hash. Only the ledger binds an
/// epoch to its hash (a second hash for an epoch is a split view).
#[test]
fn the_root_hash_does_not_bind_a_later_epoch() {
    let f = fixture();
    let r = &f.lookup.root;
    let signer = RootSigner::from_seed(&checks::DIRECTORY_SEED);
    let later = verified(&signer.sign(
        r.epoch() + 1,
        *r.root_hash(),
        r.timestamp_ms(),
        *r.vrf_public_key(),
    ));
    let alice = user(checks::USER);
    assert!(verify_lookup(&later, &alice, &f.lookup.proof).is_ok());
}

/// Every byte of a lookup and a history proof is checked: akd's decoding
/// forgave some (a direction's high bits, the root step's label), so a
/// changed proof verified as the same one until `wire` refused non-canonical
/// encodings and paths not starting at the root.
#[test]
fn every_byte_of_a_proof_is_checked() {
    let f = fixture();
    let alice = user(checks::USER);
    let (lookup_root, history_root) = (verified(&f.lookup.root), verified(&f.history.root));
    for mask in [0x01, 0x10] {
        for at in 0..f.lookup.proof.len() {
            let proof = flip(&f.lookup.proof, at, mask);
            assert!(
                verify_lookup(&lookup_root, &alice, &proof).is_err(),
                "{at} ^ {mask}"
            );
        }
        for at in 0..f.history.proof.len() {
            let proof = flip(&f.history.proof, at, mask);
            assert!(
                verify_history(&history_root, &alice, &proof).is_err(),
                "{at} ^ {mask}"
            );
        }
    }
}

fn runtime() -> &'static tokio::runtime::Runtime {
    static RT: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RT.get_or_init(|| tokio::runtime::Runtime::new().unwrap())
}

fn verified(r: &SignedRoot) -> VerifiedRoot {
    verify_root(
        r,
        &RootSigner::from_seed(&checks::DIRECTORY_SEED).public_key(),
    )
    .unwrap()
}

/// The proof with byte `at` (modulo its length) xor `mask` (not 0).
fn flip(proof: &[u8], at: usize, mask: u8) -> Vec<u8> {
    let mut out = proof.to_vec();
    let at = at % out.len();
    out[at] ^= mask;
    out
}

/// A refusal a client alerts on (bad proof or entry), never anything else.
fn refused<T: std::fmt::Debug>(r: Result<T, DirectoryError>) -> Result<(), TestCaseError> {
    match r {
        Ok(v) => Err(TestCaseError::fail(format!("accepted: {v:?}"))),
        Err(e) => {
            prop_assert!(
                matches!(e, DirectoryError::BadProof(_) | DirectoryError::BadEntry(_)),
                "{e:?}"
            );
            Ok(())
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn a_changed_lookup_proof_is_refused(at in any::<usize>(), mask in 1..=255u8) {
        let f = fixture();
        let proof = flip(&f.lookup.proof, at, mask);
        let root = verified(&f.lookup.root);
        refused(verify_lookup(&root, &user(checks::USER), &proof))?;
    }

    #[test]
    fn a_changed_history_proof_is_refused(at in any::<usize>(), mask in 1..=255u8) {
        let f = fixture();
        let proof = flip(&f.history.proof, at, mask);
        let root = verified(&f.history.root);
        refused(verify_history(&root, &user(checks::USER), &proof))?;
    }

    #[test]
    fn a_changed_audit_proof_is_refused(at in any::<usize>(), mask in 1..=255u8) {
        let f = fixture();
        let proof = flip(&f.audit_0_2, at, mask);
        let (old, new) = (verified(&f.roots[0]), verified(&f.roots[2]));
        refused(runtime().block_on(verify_audit(&old, &new, &proof)))?;
    }

    #[test]
    fn a_truncated_proof_is_refused(cut in any::<usize>()) {
        let f = fixture();
        let alice = user(checks::USER);
        let lookup = &f.lookup.proof[..cut % f.lookup.proof.len()];
        refused(verify_lookup(&verified(&f.lookup.root), &alice, lookup))?;
        let history = &f.history.proof[..cut % f.history.proof.len()];
        refused(verify_history(&verified(&f.history.root), &alice, history))?;
        let audit = &f.audit_0_2[..cut % f.audit_0_2.len()];
        let (old, new) = (verified(&f.roots[0]), verified(&f.roots[2]));
        refused(runtime().block_on(verify_audit(&old, &new, audit)))?;
    }

    /// The server signs an earlier epoch or another hash for the same
    /// proof: refused (the signature alone proves nothing about the tree).
    #[test]
    fn a_proof_under_another_signed_root_is_refused(
        before in 0..2u64,
        at in 0..32usize,
        mask in 1..=255u8,
    ) {
        let f = fixture();
        let signer = RootSigner::from_seed(&checks::DIRECTORY_SEED);
        let r = &f.lookup.root;
        prop_assert_eq!(r.epoch(), 2);
        let mut hash = *r.root_hash();
        hash[at] ^= mask;
        let alice = user(checks::USER);
        for (epoch, hash) in [(before, *r.root_hash()), (r.epoch(), hash)] {
            let other = verified(&signer.sign(epoch, hash, r.timestamp_ms(), *r.vrf_public_key()));
            refused(verify_lookup(&other, &alice, &f.lookup.proof))?;
            refused(verify_history(&other, &alice, &f.history.proof))?;
        }
    }

    /// A root changed in transit (any byte, signature included) is refused
    /// before any proof is looked at.
    #[test]
    fn a_changed_root_is_refused(at in any::<usize>(), mask in 1..=255u8) {
        let f = fixture();
        let bytes = flip(&f.lookup.root.to_bytes(), at, mask);
        let key = RootSigner::from_seed(&checks::DIRECTORY_SEED).public_key();
        match SignedRoot::from_bytes(&bytes).and_then(|r| verify_root(&r, &key)) {
            Ok(r) => return Err(TestCaseError::fail(format!("accepted: {r:?}"))),
            Err(e) => prop_assert!(
                matches!(e, DirectoryError::BadSignature | DirectoryError::BadProof(_)),
                "{e:?}"
            ),
        }
    }
}
