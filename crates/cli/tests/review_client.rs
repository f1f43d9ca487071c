//! Review of issue 11's client: each test plays one way in against a real
//! server and real clients, where a device decided on a word it had not
//! checked.
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, addr, assert_ok, assert_refused};
use valise_proto::{ConversationId, Label};

/// A member removed from a conversation is added back after another
/// member, running a modified client, raised its ceiling meanwhile. No
/// commit showed the returning device the change: it must find it by
/// comparing the policy hash of the group it joins with the record it
/// kept, alert `ceiling_changed`, keep its ceiling and send no marked
/// letter there, as the members who saw the commit do.
#[test]
fn a_ceiling_raised_while_a_member_was_out_is_seen_when_it_returns() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create_with_ceiling("Cell", &["bob", "carol"], "TLP:GREEN");
    bob.sync();
    carol.sync();
    assert_ok(&bob.try_send_marked_in(&conv, "Before", "TLP:GREEN"));

    alice.ok(&["conversation", "remove", &conv, &addr("bob")]);
    bob.sync();
    carol.sync();
    carol.rogue(async |c| {
        c.rogue_set_ceiling(
            &ConversationId::parse(&conv).unwrap(),
            Label::parse("TLP:RED").unwrap(),
        )
        .await
        .unwrap();
    });
    alice.sync();
    assert!(alice.alert_kinds().contains(&"ceiling_changed".to_owned()));
    alice.ok(&["conversation", "add", &conv, &addr("bob")]);

    bob.sync();
    let changed = bob.alert_details("ceiling_changed");
    assert!(
        changed
            .iter()
            .any(|d| d.contains("while this device was out")),
        "{changed:?}"
    );
    let c = bob.conversation(&conv);
    assert_eq!(c["ceiling"], "TLP:GREEN", "{c}");
    assert!(
        c["degraded"].as_str().unwrap_or("").starts_with("ceiling"),
        "{c}"
    );
    assert_refused(
        &bob.try_send_marked_in(&conv, "After", "TLP:GREEN"),
        "degraded",
    );
}

/// The intruder holding the server's database names a malformed
/// accreditation authority key. A device that pinned none must not be
/// stopped by it (every sync failed, its mail with it) nor pin anything;
/// a valid key named later is still pinned on first sight, with its alert.
#[test]
fn a_malformed_authority_key_from_the_server_stops_no_sync() {
    let server = Server::start();
    let alice = server.device("alice");
    alice.sync();
    let name = |key: &str| {
        server
            .db()
            .execute(
                "INSERT OR REPLACE INTO accreditation_authority (only, key, set_at_ms)
                 VALUES (1, ?1, 0)",
                [key],
            )
            .unwrap();
    };
    name("\u{1b}[2J not a key");
    assert_ok(&alice.run(&["sync"]));
    assert!(
        !alice
            .alert_kinds()
            .contains(&"accreditation_authority_changed".to_owned())
    );

    let key = common::officer::Officer::new(server.dir.path(), "so").public;
    name(&key);
    alice.sync();
    let pinned = alice.alert_details("accreditation_authority_changed");
    assert_eq!(pinned.len(), 1, "{pinned:?}");
    assert!(pinned[0].contains("first time"), "{}", pinned[0]);
}
