//! C5 and A7 on commits: a commit the hub accepted but members cannot
//! process. The hub cannot check a commit's membership and confirmation
//! tags (MACs under epoch secrets), so a malicious member, or the intruder
//! editing the stored commit as here, can hand members a commit that fails
//! for them while the hub moves on. The members refuse it, and on their
//! next sync rejoin from the hub's GroupInfo: the conversation continues
//! and everyone ends on one epoch.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, addr};
use rusqlite::params;

#[test]
fn members_that_cannot_follow_a_commit_rejoin_and_the_conversation_goes_on() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let dave = server.device("dave");
    let conv = alice.create("stuck", &["bob", "carol"]);
    bob.sync();
    carol.sync();

    // Alice adds dave; the stored commit then loses a bit of its last tag
    // before bob and carol read it.
    alice.ok(&["conversation", "add", &conv, &addr("dave")]);
    let db = server.db();
    let (id, mut commit): (i64, Vec<u8>) = db
        .query_row(
            "SELECT seq, bytes FROM log WHERE kind = 1 ORDER BY seq DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    *commit.last_mut().unwrap() ^= 0x01;
    db.execute(
        "UPDATE log SET bytes = ?1 WHERE seq = ?2",
        params![commit, id],
    )
    .unwrap();
    drop(db);

    // Each refuses it and rejoins in the same sync.
    for d in [&bob, &carol] {
        let report = d.sync();
        assert_eq!(report["rejoined"], 1, "{}: {report}", d.user);
        let kinds = d.alert_kinds();
        assert!(kinds.contains(&"refused_message".to_owned()), "{kinds:?}");
        assert_eq!(kinds.last().unwrap(), "rejoined");
    }
    common::settle(&[&alice, &bob, &carol, &dave]);
    let reference = alice.conversation(&conv)["authenticator"].clone();
    for d in [&bob, &carol, &dave] {
        assert_eq!(
            d.conversation(&conv)["authenticator"],
            reference,
            "{}",
            d.user
        );
    }
    alice.send_in(&conv, "goes on", "to all four");
    for d in [&bob, &carol, &dave] {
        assert_eq!(d.sync()["new_letters"], 1, "{}", d.user);
    }
    carol.send_in(&conv, "and back", "from carol");
    for d in [&alice, &bob, &dave] {
        assert_eq!(d.sync()["new_letters"], 1, "{}", d.user);
    }
}
