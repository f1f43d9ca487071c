//! Red-team stories (issue 8 review). Each test states the secure
//! behaviour the docs promise; on the code as reviewed they FAIL, which is
//! the finding. The intruder holds the server's database and process
//! (edits rows, restarts it) and, in the first story, a copy of one
//! revoked device's home.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr};
use rusqlite::params;
use std::time::Duration;

/// Waits until `check` holds (the publisher runs every 50 ms in tests).
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    for _ in 0..100 {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    panic!("never: {what}");
}

/// Finding 1: a revocation is not sticky. Bob's phone is stolen (a copy of
/// its home with the passphrase); bob revokes it and his laptop removes it
/// from the conversation, as the docs say. The intruder then publishes
/// bob's list again *without* the revocation (edits four columns and
/// queues the user), and restarts the server so that it forgets the
/// revoked token set. Nothing in the client remembers that the phone was
/// revoked: the laptop's history check only looks for devices it has not
/// seen, and every member re-adds an "approved" device missing from a
/// conversation. Expected (docs): the thief reads nothing after the
/// revocation and bob's devices alert.
#[test]
fn an_undone_revocation_lets_the_stolen_device_back_in_silently() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let laptop = server.device("bob");
    let phone = server.second_device("bob", &laptop);
    let conv = alice.send_to(&["bob"], "one", "to both")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    laptop.sync();
    phone.sync();
    let phone_id = phone.device_id();
    let stolen = phone.copy();

    laptop.ok(&["devices", "revoke", &phone_id]);
    let members = laptop.conversation(&conv)["members"][addr("bob")].clone();
    assert_eq!(members, serde_json::json!([laptop.device_id()]));
    alice.sync();
    alice.send_in(&conv, "two", "after the revocation");
    laptop.sync();
    let alerts_before = laptop.alert_kinds().len();

    // The intruder undoes the revocation in the database and republishes.
    let db = server.db();
    db.execute(
        "UPDATE devices SET status = 'approved', revoked_at = NULL, revoked_by = NULL, \
         revocation_sig = NULL, revoked_at_ms = NULL WHERE user = ?1 AND device = ?2",
        params![addr("bob"), phone_id],
    )
    .unwrap();
    db.execute(
        "INSERT INTO directory_pending (user, created_at_ms) VALUES (?1, 0)",
        params![addr("bob")],
    )
    .unwrap();
    drop(db);
    // The server process forgets its in-memory set of revoked devices.
    server.kill9();
    server.restart();
    eventually("the phone is published approved again", || {
        laptop
            .json(&["devices"])
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "approved")
    });

    // The thief's copy logs in again, follows its removal, restocks its
    // key packages.
    let out = stolen.run(&["sync", "--json"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Bob's laptop, on its next sync, looks after its conversations.
    let report = laptop.sync();
    alice.sync();
    alice.send_in(&conv, "three", "for bob's devices only");
    stolen.sync();

    let laptop_alerts: Vec<String> = laptop.alert_kinds()[alerts_before..].to_vec();
    let members = alice.conversation(&conv)["members"][addr("bob")].clone();
    eprintln!(
        "laptop report {report}; laptop's new alerts {laptop_alerts:?}; bob's devices in \
         alice's roster {members}; the thief's inbox {:?}",
        stolen.subjects()
    );
    assert!(
        !stolen.subjects().contains(&"three".to_owned()),
        "READ: the revoked (stolen) device reads a letter written after its revocation"
    );
    assert!(
        !laptop_alerts.is_empty(),
        "MISS: bob's laptop raised no alert when his revoked device came back"
    );
}

/// Finding 2 (lower severity): a device does not pin its OWN user's
/// identity. The intruder enrols a device R on alice's account with the
/// stock client (pending), then edits two columns so that alice's
/// published identity key is R's key: R "founds" the identity and alice's
/// own device counts as pending. Peers would raise `identity_changed`;
/// alice's own device checks nothing before it writes: `send
/// --conversation` brings the members in line with the directory
/// (`refresh_members`, which has no `own_device_approved` guard), claims
/// R's key package, and commits R into the hub's group with a Welcome
/// for it. What saves the letter is an accident: alice's own echo is then
/// refused (her own leaf is "pending"), the pending commit is discarded,
/// and the letter is held; the conversation is wedged. Expected (docs,
/// I6): the server can publish a device but cannot make anyone encrypt to
/// it, so alice must never build that commit and Welcome.
#[test]
fn a_swapped_own_identity_makes_the_user_commit_the_server_s_device() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.send_to(&["bob"], "one", "before")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.sync();
    let alice_id = alice.device_id();

    let rogue = server.device("alice");
    assert!(rogue.link_code.is_some(), "pending, as the server alone can");
    let rogue_id = rogue.device_id();

    let db = server.db();
    db.execute(
        "UPDATE users SET identity_key = \
         (SELECT signature_key FROM devices WHERE user = ?1 AND device = ?2) WHERE user = ?1",
        params![addr("alice"), rogue_id],
    )
    .unwrap();
    db.execute(
        "UPDATE devices SET status = 'approved' WHERE user = ?1 AND device = ?2",
        params![addr("alice"), rogue_id],
    )
    .unwrap();
    db.execute(
        "INSERT INTO directory_pending (user, created_at_ms) VALUES (?1, 0)",
        params![addr("alice")],
    )
    .unwrap();
    drop(db);
    eventually("the swapped identity is published", || {
        rogue
            .json(&["devices"])
            .as_array()
            .unwrap()
            .iter()
            .any(|d| d["this_device"] == true && d["status"] == "approved")
    });

    // Alice writes in her conversation with bob, as she always does.
    let out = alice.try_send_in(&conv, "two");
    let members = alice.conversation(&conv)["members"][addr("alice")].clone();
    let shown = alice.json(&["conversation", "show", &conv]);
    eprintln!(
        "send: {} {}; alice's devices in her roster {members}; the hub's state {shown}; \
         alice's alerts {:?}; R's pending inbox {:?}",
        out.status,
        String::from_utf8_lossy(&out.stderr),
        alice.alert_kinds(),
        server.pending(&rogue)
    );
    assert_eq!(members, serde_json::json!([alice_id]));
    let hub_alice = shown["hub"][addr("alice")].clone();
    assert!(
        !hub_alice.to_string().contains(&rogue_id),
        "alice's own device committed the server's device {rogue_id} into the hub's group \
         (and sent it a Welcome): {hub_alice}"
    );
}
