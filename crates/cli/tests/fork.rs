//! A10: a server that accepts two commits for one epoch and shows each
//! side of the conversation its own first (the `fork` hook of the test-only
//! `adversary` build). Every member that sees both commits raises a `fork`
//! alert; the device on the side the server does not follow rejoins by
//! external commit on its next sync, and everyone shares one epoch again.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Device, Server, addr};
use serde_json::json;

fn authenticator(d: &Device, conv: &str) -> serde_json::Value {
    d.conversation(conv)["authenticator"].clone()
}

#[test]
fn a_fork_is_noticed_by_every_member_and_healed_by_rejoining() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let dave = server.device("dave");
    let erin = server.device("erin");
    let conv = alice.create("fork", &["bob", "carol"]);
    bob.sync();
    carol.sync();

    // Bob will not see alice's commit before his own for the same epoch,
    // and the server takes both.
    server.hook(
        "fork",
        json!({ "conversation": conv, "victims": [bob.address()] }),
    );
    alice.ok(&["conversation", "add", &conv, &addr("dave")]);
    bob.ok(&["conversation", "add", &conv, &addr("erin")]);
    // Bob's device followed his own commit and saw alice's after it. Before
    // that, alice's settings for dave, of the epoch her commit starts, came
    // without that commit: held for it (and said), then refused once his
    // own commit took him to that epoch on his side.
    assert_eq!(
        bob.alert_kinds(),
        ["letters_withheld", "refused_message", "fork"]
    );
    assert_eq!(bob.conversation(&conv)["diverged"], true);
    assert_ne!(authenticator(&alice, &conv), authenticator(&bob, &conv));
    server.hook("reset", json!({}));
    // Nothing is sealed into a conversation out of step: a letter bob
    // writes now waits in his outbox, and goes once he has rejoined.
    let held = bob.try_send_in(&conv, "from the other side");
    assert!(!held.status.success());
    assert!(String::from_utf8_lossy(&held.stderr).contains("\"held\""));
    assert_eq!(
        bob.json(&["outbox"]).as_array().unwrap().len(),
        2,
        "settings and letter"
    );

    // The others see bob's commit after alice's; they follow the server.
    // (Each side also refuses what the other side sealed: alice's
    // settings for dave, bob's for erin.)
    for d in [&alice, &carol] {
        assert_eq!(d.sync()["rejoined"], 0);
        assert_eq!(d.alert_kinds()[0], "fork", "{}", d.user);
        assert!(!d.alert_kinds().contains(&"rejoined".to_owned()));
        assert_eq!(d.conversation(&conv)["diverged"], false, "{}", d.user);
    }
    dave.sync();
    // Erin's Welcome came with the second commit, which the server never
    // really applied: she is in no conversation.
    erin.sync();
    assert!(
        erin.json(&["conversation", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // Bob's next sync finds his state is not the hub's and rejoins.
    assert_eq!(bob.sync()["rejoined"], 1);
    let kinds = bob.alert_kinds();
    assert_eq!(
        kinds[..3],
        ["letters_withheld", "refused_message", "fork"],
        "{kinds:?}"
    );
    assert_eq!(kinds.last().unwrap(), "rejoined", "{kinds:?}");
    // In between, the other side's commits (alice's and carol's keys
    // renewed after the fork): refused by his group, followed publicly.
    assert!(
        kinds[3..kinds.len() - 1]
            .iter()
            .all(|k| k == "refused_message")
    );
    for d in [&alice, &carol, &dave] {
        d.sync();
    }
    let reference = authenticator(&alice, &conv);
    for d in [&bob, &carol, &dave] {
        assert_eq!(authenticator(d, &conv), reference, "NO-FORK: {}", d.user);
        assert_eq!(d.conversation(&conv)["diverged"], false, "{}", d.user);
    }
    let members = alice.conversation(&conv)["members"].clone();
    assert_eq!(members.as_object().unwrap().len(), 4, "{members}");

    for d in [&alice, &carol, &dave] {
        assert!(
            d.subjects().contains(&"from the other side".to_owned()),
            "{}",
            d.user
        );
    }

    // And letters reach everyone again, both ways.
    alice.send_in(&conv, "healed", "everyone again");
    for d in [&bob, &carol, &dave] {
        assert_eq!(d.sync()["new_letters"], 1, "{}", d.user);
    }
    bob.send_in(&conv, "back", "from bob");
    for d in [&alice, &carol, &dave] {
        assert_eq!(d.sync()["new_letters"], 1, "{}", d.user);
    }
}
