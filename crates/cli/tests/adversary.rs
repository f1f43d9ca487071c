//! The malicious server of issue 3, played through the test-only
//! `adversary` hooks of `valised` (built by `cargo test --workspace
//! --features valise-server/adversary`; release builds never have them):
//! A3 key substitution, A4/A6 a rogue device published and removed again,
//! A5 split view and rollback of the directory. Each ends in REFUSE + ALERT.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use common::{Server, addr, alice_writes_to_carol, assert_refused};
use openmls_basic_credential::SignatureKeyPair;
use serde_json::json;
use std::time::{SystemTime, UNIX_EPOCH};
use valise_mls::{CIPHERSUITE, key_package, serialize};
use valise_proto::DeviceAddress;

const ROGUE: &str = "0badc0de0badc0de";

/// A valid key package for `user/device` under a fresh key the directory
/// has never seen: what an intruder holding the server can make.
fn rogue_key_package(user: &str, device: &str) -> (Vec<u8>, Vec<u8>) {
    let provider = openmls_libcrux_crypto::Provider::default();
    let signer = SignatureKeyPair::new(CIPHERSUITE.signature_algorithm()).unwrap();
    let rogue = DeviceAddress::parse(&format!("{user}/{device}")).unwrap();
    let now_s = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs();
    let bundle = key_package::build(&provider, &signer, &rogue, false, now_s).unwrap();
    (
        serialize(bundle.key_package()).unwrap(),
        signer.public().to_vec(),
    )
}

#[test]
fn a3_a_key_not_in_the_directory_is_refused() {
    let server = Server::start();
    let alice = server.device("alice");
    let _bob = server.device("bob");
    let (kp, _) = rogue_key_package(&addr("bob"), ROGUE);
    server.hook(
        "serve-key",
        json!({"user": addr("bob"), "device": ROGUE, "key_package": B64.encode(kp)}),
    );
    let out = alice.try_send_to("bob", "s");
    // Alice must refuse bob's substituted key.
    assert_refused(&out, "key directory");
    assert!(alice.has_alert("key_not_in_directory"));
    assert!(alice.conversations().is_empty());
}

#[test]
fn a4_a6_a_rogue_device_published_and_removed_is_seen() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.sync();
    let (_, key) = rogue_key_package(&addr("alice"), ROGUE);
    server.hook(
        "rogue-device",
        json!({"user": addr("alice"), "device": ROGUE, "signature_key": B64.encode(key),
               "remove_next_epoch": true}),
    );
    // Between alice's two checks it came and went: her history check sees it.
    let report = alice.sync();
    assert_eq!(report["new_devices"], 1, "{report}");
    let alerts = alice.json(&["alerts"]);
    assert_eq!(alerts[0]["kind"], "new_device");
    assert!(alerts[0]["detail"].as_str().unwrap().contains(ROGUE));
    // Nobody adds it: bob's conversation with alice holds only her real device.
    bob.send_to(&["alice"], "hi", "hi");
    let list = bob.json(&["conversation", "list"]);
    let devices = list[0]["members"][addr("alice")]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(devices, vec![json!(alice.device_id())]);
    assert_eq!(alice.sync()["new_letters"], 1);
}

#[test]
fn a5_split_view_and_rollback_are_refused() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    alice.sync();
    bob.sync();
    let alice_device = format!("{}/{}", addr("alice"), alice.device_id());

    // Split view: alice alone is shown a forked directory where bob has
    // another key, at the same epoch as everyone else's.
    let (_, key) = rogue_key_package(&addr("bob"), ROGUE);
    server.hook(
        "fork-root",
        json!({"device": alice_device, "mode": "fork", "user": addr("bob"),
               "devices": [{"device": ROGUE, "signature_key": B64.encode(&key)}]}),
    );
    let out = alice.try_send_to("bob", "s");
    assert!(
        !out.status.success(),
        "alice must refuse the forked directory"
    );
    assert!(alice.has_alert("directory_conflict"));

    // Rollback: alice is shown the root of epoch 1.
    server.hook("reset", json!({}));
    server.hook(
        "fork-root",
        json!({"device": alice_device, "mode": "rollback", "epoch": 1}),
    );
    let out = alice.try_send_to("carol", "s");
    assert!(
        !out.status.success(),
        "alice must refuse the rolled-back root"
    );
    let conflicts = alice
        .alert_kinds()
        .iter()
        .filter(|k| *k == "directory_conflict")
        .count();
    assert_eq!(conflicts, 2);

    // Honest again: everything works and the evidence stays.
    server.hook("reset", json!({}));
    alice.send_to(&["carol"], "after", "the server behaves");
    assert_eq!(carol.sync()["new_letters"], 1);
}

#[test]
fn a5_a_split_view_between_two_members_is_seen_within_one_letter() {
    let server = Server::start();
    let (alice, _bob, carol, conv) = alice_writes_to_carol(&server);

    // From now on carol alone sees a copy of the directory where bob has
    // another device: consistent for her (audits from the copy too), so her
    // own ledger notices nothing.
    let (_, key) = rogue_key_package(&addr("bob"), ROGUE);
    server.hook(
        "fork-root",
        json!({"device": carol.address(), "mode": "split", "user": addr("bob"),
               "devices": [{"device": ROGUE, "signature_key": B64.encode(&key)}]}),
    );
    carol.sync();
    assert!(
        !carol.has_alert("directory_conflict"),
        "{:?}",
        carol.alert_kinds()
    );
    // The honest directory moves on without her.
    let _dave = server.device("dave");

    // One letter from carol carries her root: alice sees the split.
    carol.send_in(&conv, "one letter", "is enough");
    alice.sync();
    assert!(
        alice.has_alert("directory_conflict"),
        "{:?}",
        alice.alert_kinds()
    );
    assert_eq!(alice.subjects().last().unwrap(), "one letter");
}
