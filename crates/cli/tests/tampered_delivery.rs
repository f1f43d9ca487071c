//! A7 and A8 through the hooks of the test-only `adversary` build: the
//! server drops a letter at the very end of an epoch, delivers letters
//! after the commit that closed their epoch and in the wrong order,
//! replays letters, a commit and a Welcome, and reflects a letter to its
//! sender.
//! Gaps are surfaced, nothing is lost once delivered late, nothing is shown
//! twice, and nobody forks.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Device, Server, addr};
use serde_json::{Value, json};

/// Seqs of `device`'s waiting entries of this kind, oldest first.
/// The entries of this kind from `sender` waiting in `device`'s inbox (a
/// device's own commits, renewing its keys, are there too).
fn seqs(server: &Server, device: &Device, kind: &str, sender: &Device) -> Vec<u64> {
    let sender = sender.address();
    server
        .pending(device)
        .iter()
        .filter(|e| e["kind"] == kind && e["sender"] == sender.as_str())
        .map(|e| e["seq"].as_u64().unwrap())
        .collect()
}

fn alerts(device: &Device) -> Vec<Value> {
    device.json(&["alerts"]).as_array().unwrap().clone()
}

#[test]
fn a_letter_dropped_at_the_end_of_an_epoch_is_noticed() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let _carol = server.device("carol");
    let conv = alice.create("drop", &["bob"]);
    bob.sync();
    for n in 1..=3 {
        alice.send_in(&conv, &format!("Letter {n}"), "text");
    }
    // The last letter of the epoch never reaches bob; then the epoch ends.
    let letters = seqs(&server, &bob, "application", &alice);
    let bob_device = bob.address();
    server.hook(
        "drop",
        json!({ "device": bob_device, "seqs": [letters[2]] }),
    );
    alice.ok(&["conversation", "add", &conv, &addr("carol")]);
    alice.send_in(&conv, "Letter 4", "text");

    assert_eq!(bob.sync()["new_letters"], 3);
    assert_eq!(bob.subjects(), ["Letter 1", "Letter 2", "Letter 4"]);
    let alerts = alerts(&bob);
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "letters_withheld");
    let detail = alerts[0]["detail"].as_str().unwrap();
    assert!(detail.contains("numbers 3 to 3"), "{detail}");
}

#[test]
fn late_reordered_and_replayed_deliveries_lose_nothing_and_show_nothing_twice() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create("order", &["bob"]);
    bob.sync();
    alice.send_in(&conv, "First", "1");
    alice.send_in(&conv, "Second", "2");
    alice.ok(&["conversation", "add", &conv, &addr("carol")]);

    // Bob gets the commit first, then the letters of the epoch it closed,
    // the second before the first.
    let bob_device = bob.address();
    // (After the commit, the conversation's settings for carol, in epoch 2.)
    let letters = seqs(&server, &bob, "application", &alice);
    assert_eq!(letters.len(), 3);
    server.hook(
        "reorder",
        json!({ "device": bob_device, "seqs": [letters[1], letters[0]] }),
    );
    // And the commit once more at the end: a replay, not a fork.
    let replay = |from: &str, seq: &Value, to: &str| {
        server.hook("replay", json!({ "from": from, "seq": seq, "to": [to] }));
    };
    let commit = json!(seqs(&server, &bob, "commit", &alice)[0]);
    replay(&bob_device, &commit, &bob_device);
    let alice_device = alice.address();
    let kinds: Vec<Value> = server
        .pending(&bob)
        .iter()
        .filter(|e| e["sender"] == alice_device.as_str())
        .map(|e| e["kind"].clone())
        .collect();
    assert_eq!(
        kinds,
        [
            "commit",
            "application",
            "application",
            "application",
            "commit"
        ]
    );
    let report = bob.sync();
    assert_eq!(report["new_letters"], 2, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    let mut subjects = bob.subjects();
    subjects.sort();
    assert_eq!(subjects, ["First", "Second"]);
    // While "First" was missing the gap showed; the replayed commit is refused.
    let kinds: Vec<Value> = alerts(&bob).iter().map(|a| a["kind"].clone()).collect();
    assert_eq!(kinds, ["letters_withheld", "refused_message"]);
    let detail = alerts(&bob)[1]["detail"].as_str().unwrap().to_owned();
    assert!(detail.contains("replayed"), "{detail}");

    // Replays: a letter, the commit, carol's Welcome, each delivered again;
    // and alice's own letter reflected back to her.
    alice.send_in(&conv, "Third", "3");
    let carol_device = carol.address();
    let bob_entries = server.pending(&bob);
    let carol_entries = server.pending(&carol);
    let third = bob_entries
        .iter()
        .rev()
        .find(|e| e["kind"] == "application")
        .unwrap();
    replay(&bob_device, &third["seq"], &bob_device);
    replay(&bob_device, &third["seq"], &alice_device);
    let welcome = carol_entries
        .iter()
        .find(|e| e["kind"] == "welcome")
        .unwrap();
    replay(&carol_device, &welcome["seq"], &carol_device);
    assert_eq!(carol.sync()["joined"], 1);
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(alice.sync()["new_letters"], 0);
    assert_eq!(bob.subjects().iter().filter(|s| *s == "Third").count(), 1);
    assert_eq!(carol.subjects(), ["Third"]);

    // Everyone still shares one epoch, and no alert says "fork".
    let views: Vec<Value> = [&alice, &bob, &carol]
        .iter()
        .map(|d| d.conversation(&conv))
        .collect();
    for v in &views {
        assert_eq!(v["authenticator"], views[0]["authenticator"], "NO-FORK");
    }
    for d in [&alice, &bob, &carol] {
        assert!(!d.alert_kinds().contains(&"fork".to_owned()), "{}", d.user);
    }
    assert!(alice.alert_kinds().contains(&"refused_message".to_owned()));
    assert!(carol.alert_kinds().contains(&"refused_message".to_owned()));
}
