//! Stories found reading the code as the intruder would (issue 8 review),
//! each kept as a regression test. The intruder holds the server's
//! database and process (edits rows, restarts it) and, in the first story,
//! a copy of one revoked device's home.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr, alice_writes_to_carol, assert_ok, bob_on_laptop_and_phone};
use rusqlite::params;
use std::time::Duration;

/// Gives the server's publisher, which polls its queue every second, the
/// time to publish what the intruder queued in the database.
fn let_it_publish() {
    std::thread::sleep(Duration::from_millis(2500));
}

/// Bob's phone is stolen (a copy of its home with the passphrase); bob
/// revokes it. The intruder then publishes bob's list again *without* the
/// revocation (edits four columns and queues the user), and restarts the
/// server so that it forgets the revoked token set. A device's view of an
/// entry only grows: the laptop and alice refuse the new list with a
/// `directory_conflict` alert, nobody adds the phone back, and a letter
/// waits rather than go to a conversation whose members cannot be checked.
#[test]
fn an_undone_revocation_is_refused_and_the_thief_reads_nothing() {
    let mut server = Server::start();
    let (alice, laptop, phone, conv) = bob_on_laptop_and_phone(&server);
    let phone_id = phone.device_id();
    let laptop_id = laptop.device_id();
    let stolen = phone.copy();

    laptop.ok(&["devices", "revoke", &phone_id]);
    let members = laptop.members_of(&conv, "bob");
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
    let_it_publish();

    // The thief's copy logs in again, follows its removal, restocks its
    // key packages.
    let out = stolen.run(&["sync", "--json"]);
    assert_ok(&out);
    // Bob's laptop, on its next sync, refuses the rewritten entry.
    laptop.sync();
    let laptop_alerts: Vec<String> = laptop.alert_kinds()[alerts_before..].to_vec();
    assert!(
        laptop_alerts.contains(&"directory_conflict".to_owned()),
        "{laptop_alerts:?}"
    );
    // Alice refuses it too; her letter waits, and the thief reads nothing.
    alice.sync();
    let out = alice.try_send_in(&conv, "three");
    assert!(!out.status.success());
    assert!(alice.has_alert("directory_conflict"));
    let members = alice.members_of(&conv, "bob");
    assert_eq!(members, serde_json::json!([laptop_id]));
    stolen.sync();
    assert!(!stolen.subjects().contains(&"three".to_owned()));
}

/// The intruder enrols a device R on alice's account with the stock
/// client (pending), then edits two columns so that alice's published
/// identity key is R's key: R "founds" the identity and alice's own device
/// would count as pending. Alice's device refuses the rewritten entry of
/// her own user (the identity key changed without a reset), writes nothing,
/// and never commits R into the hub's group.
#[test]
fn a_swapped_own_identity_is_refused_and_the_server_s_device_never_added() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.start_conversation(&["bob"], "one", "before");
    bob.sync();
    let alice_id = alice.device_id();

    let rogue = server.device("alice");
    assert!(
        rogue.link_code.is_some(),
        "pending, as the server alone can"
    );
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
    let_it_publish();

    // Alice writes in her conversation with bob, as she always does.
    let out = alice.try_send_in(&conv, "two");
    assert!(!out.status.success(), "it waits");
    assert!(alice.has_alert("directory_conflict"));
    let members = alice.members_of(&conv, "alice");
    let shown = alice.json(&["conversation", "show", &conv]);
    assert_eq!(members, serde_json::json!([alice_id]));
    let hub_alice = shown["hub"][addr("alice")].clone();
    assert!(
        !hub_alice.to_string().contains(&rogue_id),
        "alice's own device committed the server's device {rogue_id} into the hub's group \
         (and sent it a Welcome): {hub_alice}"
    );
}

/// A split view is seen in band in both directions. Carol alone is shown a
/// copy of the directory (the `split` hook); the honest directory then
/// moves two epochs on. Alice's letters carry a root newer than anything
/// carol holds; the server cannot prove it follows from carol's (split)
/// view, and carol, a reader who does not write, raises
/// `directory_conflict`.
#[test]
fn a_split_view_is_seen_by_the_member_who_only_reads() {
    use base64::Engine as _;
    let server = Server::start();
    let (alice, _bob, carol, conv) = alice_writes_to_carol(&server);
    let key = base64::engine::general_purpose::STANDARD.encode([7u8; 32]);
    server.hook(
        "fork-root",
        serde_json::json!({"device": carol.address(), "mode": "split", "user": addr("bob"),
               "devices": [{"device": "0badc0de0badc0de", "signature_key": key}]}),
    );
    carol.sync();
    // The honest directory moves two epochs past carol's split one.
    let _dave = server.device("dave");
    let _erin = server.device("erin");
    for i in 0..3 {
        alice.send_in(&conv, &format!("letter {i}"), "from the honest side");
        carol.sync();
    }
    alice.send_in(&conv, "letter 3", "from the honest side");
    carol.sync();
    assert!(
        carol.has_alert("directory_conflict"),
        "{:?}",
        carol.alert_kinds()
    );
}
