//! The directory end to end: a real server-side directory on SQLite, and
//! the client-side checks against it, including a server that lies.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::sync::Arc;
use valise_directory::storage::AkdDatabase;
use valise_directory::*;
use valise_proto::{DeviceId, UserId};

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn dev(n: u8) -> DeviceEntry {
    DeviceEntry::new(DeviceId::from_bytes([n; 8]), vec![n; 32], u64::from(n), 1)
}

/// A list whose first device founded the identity, numbered in order.
fn list(devs: &[DeviceEntry]) -> DeviceList {
    let identity = Identity {
        key: devs[0].signature_key.clone(),
        generation: 1,
    };
    let numbered = devs
        .iter()
        .enumerate()
        .map(|(i, d)| DeviceEntry {
            number: i as u64,
            ..d.clone()
        })
        .collect();
    DeviceList::new(identity, numbered).unwrap()
}

async fn memory_directory() -> Directory<SqliteDirectoryStorage> {
    let storage = Arc::new(SqliteDirectoryStorage::in_memory().unwrap());
    Directory::open(storage, RootSigner::from_seed(&[7; 32]))
        .await
        .unwrap()
}

/// A second directory with the same VRF and signing keys as `dir`.
async fn fork_of(dir: &Directory<SqliteDirectoryStorage>) -> Directory<SqliteDirectoryStorage> {
    let name = valise_directory::vrf::VRF_SECRET_NAME;
    let secret = dir.storage().get_secret(name).unwrap().unwrap();
    let storage = Arc::new(SqliteDirectoryStorage::in_memory().unwrap());
    storage.insert_secret_if_absent(name, &secret).unwrap();
    let fork = Directory::open(storage, RootSigner::from_seed(&[7; 32]))
        .await
        .unwrap();
    assert_eq!(fork.vrf_public_key(), dir.vrf_public_key());
    fork
}

#[tokio::test]
async fn publish_lookup_history_audit_round_trip() {
    let dir = memory_directory().await;
    let key = dir.directory_key();
    let (alice, bob) = (user("alice@mfa.example"), user("bob@mfa.example"));

    let r0 = verify_root(&dir.root().await.unwrap(), &key).unwrap();
    assert_eq!(r0.epoch(), 0);
    let r1 = dir
        .publish(vec![
            (alice.clone(), list(&[dev(1)])),
            (bob.clone(), list(&[dev(2)])),
        ])
        .await
        .unwrap();
    let r1 = verify_root(&r1, &key).unwrap();
    assert_eq!(r1.epoch(), 1);

    let proven = dir.lookup(&alice).await.unwrap();
    let root = verify_root(&proven.root, &key).unwrap();
    let got = verify_lookup(&root, &alice, &proven.proof).unwrap();
    assert_eq!(got.devices, list(&[dev(1)]));
    assert_eq!((got.epoch, got.version), (1, 1));

    // Alice enrols a second device: her next version.
    let r2 = dir
        .publish(vec![(alice.clone(), list(&[dev(1), dev(3)]))])
        .await
        .unwrap();
    let r2 = verify_root(&r2, &key).unwrap();
    assert_eq!(r2.epoch(), 2);
    let proven = dir.lookup(&alice).await.unwrap();
    let root = verify_root(&proven.root, &key).unwrap();
    let got = verify_lookup(&root, &alice, &proven.proof).unwrap();
    assert_eq!(got.devices.devices().len(), 2);
    assert_eq!((got.epoch, got.version), (2, 2));
    // Bob's entry did not move.
    let proven = dir.lookup(&bob).await.unwrap();
    let got = verify_lookup(&root, &bob, &proven.proof).unwrap();
    assert_eq!((got.epoch, got.version), (1, 1));

    let proven = dir.history(&alice).await.unwrap();
    let root = verify_root(&proven.root, &key).unwrap();
    let hist = verify_history(&root, &alice, &proven.proof).unwrap();
    assert_eq!(hist.len(), 2);
    assert_eq!(hist[0].devices, list(&[dev(1)]));
    assert_eq!(hist[1].devices, list(&[dev(1), dev(3)]));

    // Append-only from epoch 0 to 2, in one proof and step by step.
    let audit = dir.audit(0, 2).await.unwrap();
    verify_audit(&r0, &r2, &audit).await.unwrap();
    let audit = dir.audit(1, 2).await.unwrap();
    verify_audit(&r1, &r2, &audit).await.unwrap();
    // A proof for other epochs does not fit.
    assert_eq!(
        verify_audit(&r0, &r2, &audit).await.unwrap_err().code(),
        "bad_proof"
    );

    // The ledger walks forward with audit proofs only.
    let mut ledger = RootLedger::new();
    assert_eq!(ledger.advance(&r0, None).await.unwrap(), Step::First);
    assert_eq!(
        ledger.advance(&r2, None).await.unwrap_err().code(),
        "bad_proof"
    );
    let audit = dir.audit(0, 2).await.unwrap();
    assert_eq!(
        ledger.advance(&r2, Some(&audit)).await.unwrap(),
        Step::Forward { from_epoch: 0 }
    );
    assert_eq!(ledger.last().unwrap().epoch(), 2);

    // Unknown users and bad requests get their codes.
    assert_eq!(
        dir.lookup(&user("carol@mfa.example"))
            .await
            .unwrap_err()
            .code(),
        "not_found"
    );
    assert_eq!(dir.audit(2, 2).await.unwrap_err().code(), "invalid_request");
    assert_eq!(
        dir.publish(vec![
            (bob.clone(), list(&[dev(2)])),
            (bob.clone(), list(&[dev(4)]))
        ])
        .await
        .unwrap_err()
        .code(),
        "invalid_request"
    );
    // Republishing an unchanged list makes no epoch.
    let same = dir
        .publish(vec![(bob.clone(), list(&[dev(2)]))])
        .await
        .unwrap();
    assert_eq!(same.epoch(), 2);
}

#[tokio::test]
async fn tampered_proofs_and_foreign_roots_are_refused() {
    let dir = memory_directory().await;
    let key = dir.directory_key();
    let (alice, bob) = (user("alice@mfa.example"), user("bob@mfa.example"));
    dir.publish(vec![
        (alice.clone(), list(&[dev(1)])),
        (bob.clone(), list(&[dev(2)])),
    ])
    .await
    .unwrap();
    let proven = dir.lookup(&alice).await.unwrap();
    let root = verify_root(&proven.root, &key).unwrap();

    // Alice's proof is not a proof of Bob's entry (key substitution, A3).
    assert_eq!(
        verify_lookup(&root, &bob, &proven.proof)
            .unwrap_err()
            .code(),
        "bad_proof"
    );
    // Any flipped bit in the proof is refused, never a panic.
    let mut refused = 0;
    for i in (0..proven.proof.len()).step_by(7) {
        let mut p = proven.proof.clone();
        p[i] ^= 0x01;
        match verify_lookup(&root, &alice, &p) {
            Err(e) => {
                assert!(e.is_evidence(), "{e}");
                refused += 1;
            }
            // A flip in a protobuf tag may decode to the same proof.
            Ok(got) => assert_eq!(got.devices, list(&[dev(1)])),
        }
    }
    assert!(refused > 0);
    let hist = dir.history(&alice).await.unwrap();
    let mut p = hist.proof.clone();
    let last = p.len() - 1;
    p[last] ^= 0x40;
    assert!(verify_history(&root, &alice, &p).is_err());
    assert!(verify_history(&root, &bob, &hist.proof).is_err());
    assert!(verify_lookup(&root, &alice, b"").is_err());

    // A root signed by another key, or altered after signing, is refused.
    let other = RootSigner::from_seed(&[8; 32]).public_key();
    assert_eq!(
        verify_root(&proven.root, &other).unwrap_err().code(),
        "bad_signature"
    );
    let bytes = proven.root.to_bytes();
    let mut forged = bytes.clone();
    forged[30] ^= 1; // inside the epoch / hash
    let forged = SignedRoot::from_bytes(&forged).unwrap();
    assert_eq!(
        verify_root(&forged, &key).unwrap_err().code(),
        "bad_signature"
    );
    assert_eq!(SignedRoot::from_bytes(&bytes).unwrap(), proven.root);
    assert!(SignedRoot::from_bytes(&bytes[1..]).is_err());
    // JSON carries the same root.
    let json = serde_json::to_string(&proven.root).unwrap();
    assert_eq!(
        serde_json::from_str::<SignedRoot>(&json).unwrap(),
        proven.root
    );
}

#[tokio::test]
async fn rollback_and_split_view_are_refused_with_evidence() {
    let dir = memory_directory().await;
    let key = dir.directory_key();
    let alice = user("alice@mfa.example");
    let r1 = dir
        .publish(vec![(alice.clone(), list(&[dev(1)]))])
        .await
        .unwrap();
    let r2 = dir
        .publish(vec![(alice.clone(), list(&[dev(1), dev(2)]))])
        .await
        .unwrap();
    let (v1, v2) = (
        verify_root(&r1, &key).unwrap(),
        verify_root(&r2, &key).unwrap(),
    );

    let mut ledger = RootLedger::new();
    ledger.accept(&v2).unwrap();
    // Rollback to epoch 1.
    match ledger.accept(&v1).unwrap_err() {
        DirectoryError::Rollback { seen, offered } => {
            assert_eq!(*seen, r2);
            assert_eq!(*offered, r1);
        }
        other => panic!("{other:?}"),
    }
    // The same epoch again (re-signed later) is fine.
    let again = verify_root(&dir.root().await.unwrap(), &key).unwrap();
    assert_eq!(ledger.accept(&again).unwrap(), Step::Same);

    // A server that copied its keys into a second database: it shows one
    // view to Alice and another to Bob. Same epoch, different hash.
    let fork = fork_of(&dir).await;
    fork.publish(vec![(alice.clone(), list(&[dev(9)]))])
        .await
        .unwrap();
    let f2 = fork
        .publish(vec![(alice.clone(), list(&[dev(9), dev(8)]))])
        .await
        .unwrap();
    let vf2 = verify_root(&f2, &key).unwrap();
    assert_eq!(vf2.epoch(), 2);
    let err = ledger.accept(&vf2).unwrap_err();
    assert_eq!(err.code(), "split_view");
    assert!(err.is_evidence());
    // verify_audit says the same.
    assert_eq!(
        verify_audit(&v2, &vf2, b"").await.unwrap_err().code(),
        "split_view"
    );
    assert_eq!(
        verify_audit(&v2, &v1, b"").await.unwrap_err().code(),
        "rollback"
    );
    // A forked epoch 3 does not audit from the honest epoch 2.
    let f3 = fork
        .publish(vec![(user("mallory@mfa.example"), list(&[dev(6)]))])
        .await
        .unwrap();
    let vf3 = verify_root(&f3, &key).unwrap();
    let fork_audit = fork.audit(2, 3).await.unwrap();
    assert_eq!(
        ledger
            .advance(&vf3, Some(&fork_audit))
            .await
            .unwrap_err()
            .code(),
        "bad_proof"
    );
    assert_eq!(ledger.last().unwrap(), &again.signed().clone());

    // A directory under another VRF key (every label moves) is refused
    // even at a newer epoch.
    let other_vrf = memory_directory().await;
    for n in 0..3 {
        other_vrf
            .publish(vec![(alice.clone(), list(&[dev(20 + n)]))])
            .await
            .unwrap();
    }
    let o3 = verify_root(&other_vrf.root().await.unwrap(), &key).unwrap();
    assert_eq!(o3.epoch(), 3);
    assert_eq!(ledger.accept(&o3).unwrap_err().code(), "vrf_key_changed");

    // The ledger persists.
    let json = serde_json::to_string(&ledger).unwrap();
    assert_eq!(serde_json::from_str::<RootLedger>(&json).unwrap(), ledger);
}

#[tokio::test]
async fn history_shows_a_device_added_then_removed() {
    let dir = memory_directory().await;
    let key = dir.directory_key();
    let alice = user("alice@mfa.example");
    dir.publish(vec![(alice.clone(), list(&[dev(1)]))])
        .await
        .unwrap();
    // Alice's device checks here.
    let before = dir.history(&alice).await.unwrap();
    let root = verify_root(&before.root, &key).unwrap();
    assert_eq!(
        verify_history(&root, &alice, &before.proof).unwrap().len(),
        1
    );

    // An intruder adds a rogue device, then removes it (A4, A6).
    let rogue = dev(66);
    dir.publish(vec![(alice.clone(), list(&[dev(1), rogue.clone()]))])
        .await
        .unwrap();
    dir.publish(vec![(alice.clone(), list(&[dev(1)]))])
        .await
        .unwrap();

    // The current list looks clean...
    let now = dir.lookup(&alice).await.unwrap();
    let root = verify_root(&now.root, &key).unwrap();
    assert_eq!(
        verify_lookup(&root, &alice, &now.proof).unwrap().devices,
        list(&[dev(1)])
    );
    // ...but the history proves the rogue device was published.
    let after = dir.history(&alice).await.unwrap();
    let root = verify_root(&after.root, &key).unwrap();
    let hist = verify_history(&root, &alice, &after.proof).unwrap();
    assert_eq!(hist.len(), 3);
    assert!(hist.iter().any(|v| v.devices.get(&rogue.device).is_some()));
    assert_eq!(
        hist.iter().map(|v| v.version).collect::<Vec<_>>(),
        vec![1, 2, 3]
    );
    assert_eq!(hist[1].epoch, 2);
}

#[tokio::test]
async fn state_survives_reopen() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("server.db");
    let alice = user("alice@mfa.example");
    let (root1, vrf1, key1) = {
        let storage = Arc::new(SqliteDirectoryStorage::open(&path).unwrap());
        let signer = RootSigner::load_or_create(&*storage).unwrap();
        let dir = Directory::open(storage, signer).await.unwrap();
        let r = dir
            .publish(vec![(alice.clone(), list(&[dev(1)]))])
            .await
            .unwrap();
        (r, dir.vrf_public_key(), dir.directory_key())
    };
    let storage = Arc::new(SqliteDirectoryStorage::open(&path).unwrap());
    let signer = RootSigner::load_or_create(&*storage).unwrap();
    let dir = Directory::open(storage, signer).await.unwrap();
    let key = dir.directory_key();
    assert_eq!(key, key1, "the signing key is persistent");
    assert_eq!(dir.vrf_public_key(), vrf1, "the VRF key is persistent");
    let root = dir.root().await.unwrap();
    assert_eq!((root.epoch(), root.root_hash()), (1, root1.root_hash()));

    let proven = dir.lookup(&alice).await.unwrap();
    let v = verify_root(&proven.root, &key).unwrap();
    assert_eq!(
        verify_lookup(&v, &alice, &proven.proof).unwrap().devices,
        list(&[dev(1)])
    );
    let r2 = dir
        .publish(vec![(alice.clone(), list(&[dev(1), dev(2)]))])
        .await
        .unwrap();
    let audit = dir.audit(1, 2).await.unwrap();
    verify_audit(
        &verify_root(&root1, &key).unwrap(),
        &verify_root(&r2, &key).unwrap(),
        &audit,
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn sqlite_storage_passes_akd_conformance_suite() {
    let storage = Arc::new(SqliteDirectoryStorage::in_memory().unwrap());
    akd::storage::tests::run_test_cases_for_storage_impl(AkdDatabase::new(storage)).await;
}

#[tokio::test]
async fn sqlite_storage_shares_a_file_and_keeps_secrets() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("shared.db");
    // The server's own tables and user_version are left alone.
    let conn = rusqlite::Connection::open(&path).unwrap();
    conn.execute_batch("CREATE TABLE server_things (x INTEGER); PRAGMA user_version = 3;")
        .unwrap();
    let s = SqliteDirectoryStorage::on_connection(conn).unwrap();
    assert!(s.get_secret("k").unwrap().is_none());
    assert_eq!(&**s.insert_secret_if_absent("k", b"one").unwrap(), b"one");
    assert_eq!(&**s.insert_secret_if_absent("k", b"two").unwrap(), b"one");
    drop(s);
    let again = SqliteDirectoryStorage::open(&path).unwrap();
    assert_eq!(&**again.get_secret("k").unwrap().unwrap(), b"one");
    let conn = rusqlite::Connection::open(&path).unwrap();
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .unwrap();
    assert_eq!(v, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proofs_made_during_a_publish_verify() {
    let dir = Arc::new(memory_directory().await);
    let key = dir.directory_key();
    let users: Vec<UserId> = (0..300)
        .map(|i| user(&format!("u{i}@mfa.example")))
        .collect();
    dir.publish(users.iter().map(|u| (u.clone(), list(&[dev(1)]))).collect())
        .await
        .unwrap();
    let publisher = {
        let (dir, users) = (dir.clone(), users.clone());
        tokio::spawn(async move {
            for round in 2..5u8 {
                dir.publish(
                    users
                        .iter()
                        .map(|u| (u.clone(), list(&[dev(1), dev(round)])))
                        .collect(),
                )
                .await
                .unwrap();
            }
        })
    };
    let mut checked = 0;
    let mut epochs = std::collections::BTreeSet::new();
    while !publisher.is_finished() || checked < 20 {
        let u = &users[checked % users.len()];
        let p = dir.lookup(u).await.unwrap();
        let root = verify_root(&p.root, &key).unwrap();
        verify_lookup(&root, u, &p.proof).unwrap();
        epochs.insert(root.epoch());
        checked += 1;
    }
    publisher.await.unwrap();
    assert!(checked >= 20);
    assert_eq!(dir.root().await.unwrap().epoch(), 4);
}
