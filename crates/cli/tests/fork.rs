//! A10: a server that accepts two commits for one epoch and shows each
//! side of the conversation its own first (the `fork` hook of the test-only
//! `adversary` build). Every member that sees both commits raises a `fork`
//! alert; the side the server follows recovers the other by re-adding it.

mod common;
use common::{Server, addr};
use serde_json::json;

#[test]
fn a_fork_is_noticed_by_every_member_and_healed_by_re_adding() {
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
    for d in [&alice, &carol, &dave, &erin] {
        d.sync();
    }

    // Everyone who saw both commits for the epoch says so.
    for d in [&alice, &bob, &carol] {
        assert!(d.alert_kinds().contains(&"fork".to_owned()), "{}", d.user);
        assert_eq!(d.conversation(&conv)["forked"], true, "{}", d.user);
    }
    let followed = |d: &common::Device| d.conversation(&conv)["authenticator"].clone();
    assert_eq!(followed(&alice), followed(&carol));
    assert_eq!(followed(&alice), followed(&dave));
    assert_ne!(followed(&alice), followed(&bob));
    // Erin's Welcome came with the second commit, which the server never
    // really applied: she is in neither side.
    assert!(
        erin.json(&["conversation", "list"])
            .as_array()
            .unwrap()
            .is_empty()
    );

    // The two sides cannot read each other.
    alice.send_in(&conv, "to one side", "only the side alice is on");
    assert_eq!(carol.sync()["new_letters"], 1);
    assert_eq!(dave.sync()["new_letters"], 1);
    assert_eq!(bob.sync()["new_letters"], 0);

    // Recovery: alice, on the side the server follows, re-adds bob.
    server.hook("reset", json!({}));
    alice.ok(&["conversation", "remove", &conv, &addr("bob")]);
    alice.ok(&["conversation", "add", &conv, &addr("bob")]);
    for d in [&bob, &carol, &dave] {
        d.sync();
    }
    let views: Vec<_> = [&alice, &bob, &carol, &dave]
        .iter()
        .map(|d| d.conversation(&conv))
        .collect();
    for v in &views {
        assert_eq!(v["authenticator"], views[0]["authenticator"], "NO-FORK");
    }
    assert_eq!(views[1]["forked"], false);
    alice.send_in(&conv, "healed", "everyone again");
    for d in [&bob, &carol, &dave] {
        assert_eq!(d.sync()["new_letters"], 1, "{}", d.user);
    }
    assert_eq!(bob.subjects().last().unwrap(), "healed");
}
