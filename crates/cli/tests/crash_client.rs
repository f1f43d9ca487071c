//! F1: the client crashes around a commit — before sending it, after the
//! hub accepted it but before merging, after merging. On restart the device
//! converges with the others (same epoch authenticator: NO-FORK) and keeps
//! writing; nobody sees anything twice.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr};

fn crash_while_adding(point: &str) {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create("F1", &["bob"]);
    bob.sync();

    let crashed = alice.run_env(
        &["conversation", "add", &conv, &addr("carol")],
        &[("VALISE_FAILPOINT", point)],
    );
    assert_eq!(
        crashed.status.code(),
        Some(137),
        "{point}: the crash point was not reached"
    );

    // Restart: alice syncs, then carries on.
    alice.sync();
    let added = point != "commit-before-send";
    if !added {
        // The hub never saw the commit: alice adds carol again.
        alice.ok(&["conversation", "add", &conv, &addr("carol")]);
    }
    alice.send_in(&conv, &format!("after {point}"), "Still one conversation.");
    assert_eq!(bob.sync()["new_letters"], 1, "{point}");
    let c = carol.sync();
    assert_eq!(c["joined"], 1, "{point}");
    assert_eq!(c["new_letters"], 1, "{point}");

    // NO-FORK: all three on the same epoch with the same authenticator,
    // once carol's renewal of the leaf she joined with went round.
    common::settle(&[&alice, &bob, &carol]);
    let views: Vec<_> = [&alice, &bob, &carol]
        .iter()
        .map(|d| d.conversation(&conv))
        .collect();
    for v in &views[1..] {
        assert_eq!(v["epoch"], views[0]["epoch"], "{point}");
        assert_eq!(v["authenticator"], views[0]["authenticator"], "{point}");
    }
    assert_eq!(views[0]["members"].as_object().unwrap().len(), 3);

    // Everyone keeps talking; nothing shows twice.
    bob.send_in(&conv, &format!("bob after {point}"), "ok");
    assert_eq!(alice.sync()["new_letters"], 1);
    assert_eq!(carol.sync()["new_letters"], 1);
    assert_eq!(bob.sync()["new_letters"], 0);
    assert!(
        alice.json(&["alerts"]).as_array().unwrap().is_empty(),
        "{point}: no alert expected"
    );
}

#[test]
fn crash_before_sending_the_commit() {
    crash_while_adding("commit-before-send");
}

#[test]
fn crash_after_the_hub_accepted_before_merging() {
    crash_while_adding("commit-after-accept");
}

#[test]
fn crash_after_merging() {
    crash_while_adding("commit-after-merge");
}
