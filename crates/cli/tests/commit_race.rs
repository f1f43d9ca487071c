//! Commit races: two members change the roster of one conversation at the
//! same moment. The hub accepts one commit per epoch; the loser catches up
//! and re-applies its change. Nobody forks (NO-FORK), both changes land.

mod common;
use common::{Server, addr};

#[test]
fn two_members_commit_at_once_and_nobody_forks() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let dave = server.device("dave");
    let conv = alice.create("race", &["bob"]);
    bob.sync();

    for _round in 0..3 {
        // Both start from the same epoch; their commits race at the hub.
        common::settle(&[&alice, &bob]);
        let epoch = alice.conversation(&conv)["epoch"].clone();
        assert_eq!(bob.conversation(&conv)["epoch"], epoch);
        let a = alice.spawn_json(&["conversation", "add", &conv, &addr("carol")]);
        let b = bob.spawn_json(&["conversation", "add", &conv, &addr("dave")]);
        for child in [a, b] {
            let out = child.wait_with_output().unwrap();
            assert!(
                out.status.success(),
                "{}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        common::settle(&[&alice, &bob, &carol, &dave]);
        let views: Vec<_> = [&alice, &bob, &carol, &dave]
            .iter()
            .map(|d| d.conversation(&conv))
            .collect();
        for v in &views[1..] {
            assert_eq!(v["epoch"], views[0]["epoch"]);
            assert_eq!(v["authenticator"], views[0]["authenticator"]);
        }
        assert_eq!(views[0]["members"].as_object().unwrap().len(), 4);
        // Make room for the next round: both leave again (one after the other).
        alice.ok(&["conversation", "remove", &conv, &addr("carol")]);
        bob.sync();
        bob.ok(&["conversation", "remove", &conv, &addr("dave")]);
        alice.sync();
        carol.sync();
        dave.sync();
    }
    // And the conversation still carries letters to everyone in it.
    alice.send_in(&conv, "after the races", "ok");
    assert_eq!(bob.sync()["new_letters"], 1);
    let alerts = (alice.json(&["alerts"]), bob.json(&["alerts"]));
    assert!(
        alerts.0.as_array().unwrap().is_empty() && alerts.1.as_array().unwrap().is_empty(),
        "{alerts:?}"
    );
}
