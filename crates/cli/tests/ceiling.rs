//! Conversation ceilings (issue 11), against a real server: the ceiling
//! every member holds and the hub never learns, sends above it refused,
//! a letter above it never shown (spillage), a malicious member who raises
//! it seen by everyone with no fork, forwarding and replies that keep the
//! marking, a member who adds someone not accredited. The malicious member
//! runs a modified client (the `failpoints` feature of these builds):
//! `VALISE_FAILPOINT=skip_marking_check`, or the library's test-only
//! `rogue_set_ceiling`. Accreditations are signed by a
//! security officer's key (`common::officer`).
// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::officer::{MODIFIED, officer_and_server};
use common::{
    Device, Server, addr, assert_no_fork, assert_ok, assert_refused, contains, settle, stderr,
};
use serde_json::Value;
use valise_proto::{ConversationId, Label};

/// Alice, bob and carol on `server`, in a conversation alice made with
/// `ceiling` and the others have joined; its id last.
fn three_in_a_cell(server: &Server, name: &str, ceiling: &str) -> (Device, Device, Device, String) {
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create_with_ceiling(name, &["bob", "carol"], ceiling);
    bob.sync();
    carol.sync();
    (alice, bob, carol, conv)
}

fn conv_id(id: &str) -> ConversationId {
    ConversationId::parse(id).unwrap()
}

fn label(text: &str) -> Label {
    Label::parse(text).unwrap()
}

/// Every byte of every file of the server's data directory (database,
/// WAL, logs, state), and the logs.
fn server_bytes(server: &Server) -> Vec<u8> {
    let mut all = Vec::new();
    for f in common::files(server.dir.path()) {
        // The devices' homes live beside the server's data: not the server's.
        let rel = f.strip_prefix(server.dir.path()).unwrap();
        if rel.components().next().is_some_and(|c| {
            let c = c.as_os_str().to_string_lossy();
            c.starts_with("home-") || c.starts_with("copy-")
        }) {
            continue;
        }
        all.extend(std::fs::read(&f).unwrap_or_default());
    }
    all
}

/// A conversation made with a ceiling: every member holds it, letters
/// within it go, letters above it are refused at the sender, and the hub
/// holds only the policy's salted hash, never the ceiling (NO-PLAINTEXT).
#[test]
fn a_ceiling_is_held_by_every_member_enforced_and_unknown_to_the_hub() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    // EU RESTRICTED covers TLP:AMBER, not TLP:RED nor AMBER+STRICT.
    so.accredit_all(&server, &["alice", "bob"], "EU RESTRICTED");
    let conv = alice.create_with_ceiling("Sanctions cell", &["bob"], "TLP:AMBER");
    assert_eq!(bob.sync()["joined"], 1);
    for dev in [&alice, &bob] {
        let c = dev.conversation(&conv);
        assert_eq!(c["ceiling"], "TLP:AMBER", "{}", dev.user);
        assert_eq!(c["ceiling_known"], true);
        assert_eq!(c["degraded"], Value::Null);
        let shown = dev.json(&["conversation", "show", &conv]);
        assert_eq!(shown["ceiling"], "TLP:AMBER");
    }

    // Within the ceiling: sent and read.
    let ok = alice.try_send_marked_in(&conv, "Within", "TLP:GREEN");
    assert_ok(&ok);
    let ok = bob.try_send_marked_in(&conv, "At the ceiling", "TLP:AMBER");
    assert_ok(&ok);
    // Above it: refused at the sender, nothing leaves.
    for above in ["TLP:RED", "LIMITE", "TLP:AMBER+STRICT"] {
        let refused = alice.try_send_marked_in(&conv, "Above", above);
        assert_refused(&refused, "above");
    }
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(alice.sync()["new_letters"], 1);
    assert!(!bob.subjects().contains(&"Above".to_owned()));
    // Nothing to alert but the attestations published on their accounts.
    for dev in [&alice, &bob] {
        let kinds = dev.alert_kinds();
        assert!(
            kinds.iter().all(|k| k == "admin_action"),
            "{}: {kinds:?}",
            dev.user
        );
    }

    // The hub holds the group context with the 32-byte policy hash in the
    // required private extension (type 0xF1A5, length 32)...
    let bytes = server_bytes(&server);
    assert!(
        contains(&bytes, &[0xf1, 0xa5, 0x20]),
        "no policy hash at the hub"
    );
    // ...and nowhere the ceiling's words (a label's CBOR would hold them).
    for word in ["AMBER", "Sanctions cell"] {
        assert!(
            !contains(&bytes, word.as_bytes()),
            "{word} reached the server"
        );
    }
}

/// A ceiling some member is not accredited for: the conversation is not
/// made, nor is such a person added to one, and the refusal names the
/// device. A member running a modified client adds them anyway: the
/// commit is merged by everyone (no fork), every other member alerts
/// `unaccredited_member` and refuses marked letters there until that
/// person is removed.
#[test]
fn unaccredited_members_are_refused_and_degrade_a_conversation_they_are_forced_into() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    so.accredit_all(&server, &["alice", "bob"], "EU RESTRICTED");
    let refused = |out: std::process::Output, device: &str| {
        assert!(!out.status.success());
        let err = stderr(&out);
        assert!(
            err.contains("not accredited") && err.contains(device),
            "{err}"
        );
    };
    refused(
        alice.run(&[
            "conversation",
            "create",
            "--name",
            "Restricted cell",
            "--member",
            &addr("carol"),
            "--ceiling",
            "EU RESTRICTED",
        ]),
        &carol.address(),
    );
    assert!(alice.conversations().is_empty());
    // An unknown marking is no ceiling at all.
    let unknown = alice.run(&[
        "conversation",
        "create",
        "--name",
        "x",
        "--member",
        &addr("bob"),
        "--ceiling",
        "TOP FRIENDLY",
    ]);
    assert!(!unknown.status.success());

    let conv = alice.create_with_ceiling("Restricted cell", &["bob"], "EU RESTRICTED");
    bob.sync();
    refused(
        alice.run(&["conversation", "add", &conv, &addr("carol")]),
        &carol.address(),
    );
    let ok = alice.try_send_marked_in(&conv, "Restricted", "EU RESTRICTED");
    assert_ok(&ok);

    // Bob's modified client adds carol anyway.
    let out = bob.run_env(&["conversation", "add", &conv, &addr("carol")], MODIFIED);
    assert_ok(&out);
    settle(&[&alice, &bob, &carol]);
    assert!(
        alice
            .alert_kinds()
            .contains(&"unaccredited_member".to_owned()),
        "{:?}",
        alice.alert_kinds()
    );
    let c = alice.conversation(&conv);
    assert!(c["degraded"].as_str().unwrap().starts_with("member"), "{c}");
    assert_no_fork(&[&alice, &bob, &carol], &conv);
    let refused_send = alice.try_send_marked_in(&conv, "While carol is in", "EU RESTRICTED");
    assert_refused(&refused_send, "degraded");
    // Carol never got a marked letter of the conversation.
    assert!(carol.subjects().is_empty(), "{:?}", carol.subjects());

    // Removed: whole again.
    alice.ok(&["conversation", "remove", &conv, &addr("carol")]);
    assert_eq!(alice.conversation(&conv)["degraded"], Value::Null);
    let ok = alice.try_send_marked_in(&conv, "After carol", "EU RESTRICTED");
    assert_ok(&ok);
    bob.sync();
    assert_eq!(bob.conversation(&conv)["degraded"], Value::Null);
    assert!(bob.subjects().contains(&"After carol".to_owned()));
}

/// A modified client sends EU RESTRICTED into a TLP:CLEAR conversation:
/// no other member shows it, every one of them raises `spillage`.
#[test]
fn a_letter_above_the_ceiling_stays_sealed_with_a_spillage_alert() {
    let server = Server::start();
    let (alice, bob, carol, conv) = three_in_a_cell(&server, "Open cell", "TLP:CLEAR");
    let out = alice.run_env(
        &[
            "send",
            "--conversation",
            &conv,
            "--subject",
            "Spilled",
            "--body",
            "restricted words",
            "--marking",
            "EU RESTRICTED",
        ],
        MODIFIED,
    );
    assert_ok(&out);
    alice.send_in(&conv, "Plain", "An unmarked letter still goes.");
    for dev in [&bob, &carol] {
        let r = dev.sync();
        assert_eq!(r["new_letters"], 1, "{}: {r}", dev.user);
        // The marked letter is only a stub saying why: nothing of it.
        assert_eq!(dev.subjects(), ["(withheld)", "Plain"], "{}", dev.user);
        common::assert_withheld(dev, "ceiling", &["Spilled", "restricted words"]);
        assert_eq!(dev.alert_kinds(), ["spillage"], "{}", dev.user);
    }
}

/// A member running a modified client raises the ceiling by commit and
/// sends the new policy: every other member merges the commit (one epoch
/// authenticator for all: no fork), alerts `ceiling_changed`, keeps the
/// ceiling it held, and refuses marked letters there from then on.
#[test]
fn a_member_who_raises_the_ceiling_is_seen_and_nothing_forks() {
    let server = Server::start();
    let (alice, bob, carol, conv) = three_in_a_cell(&server, "Cell", "TLP:GREEN");
    let marked = alice.try_send_marked_in(&conv, "Before", "TLP:GREEN");
    assert_ok(&marked);

    carol.rogue(async |c| {
        c.rogue_set_ceiling(&conv_id(&conv), label("TLP:RED"))
            .await
            .unwrap();
    });
    for dev in [&alice, &bob] {
        dev.sync();
        assert!(
            dev.alert_kinds().contains(&"ceiling_changed".to_owned()),
            "{}: {:?}",
            dev.user,
            dev.alert_kinds()
        );
        let c = dev.conversation(&conv);
        assert_eq!(
            c["ceiling"], "TLP:GREEN",
            "{}: the raise is not taken",
            dev.user
        );
        assert!(
            c["degraded"].as_str().unwrap().starts_with("ceiling"),
            "{c}"
        );
    }
    settle(&[&alice, &bob, &carol]);
    assert_no_fork(&[&alice, &bob, &carol], &conv);
    assert_eq!(
        alice.conversation(&conv)["epoch"],
        carol.conversation(&conv)["epoch"]
    );

    // Degraded: marked letters are refused, unmarked ones still go.
    let refused = bob.try_send_marked_in(&conv, "After", "TLP:GREEN");
    assert_refused(&refused, "degraded");
    bob.send_in(&conv, "Unmarked", "still fine");
    assert_eq!(alice.sync()["new_letters"], 1);
}

/// Forwarding re-checks the target, replies keep the thread's marking.
/// (Rules across domains, AMBER+STRICT and EU markings, are played by the
/// client's unit tests: this server has one domain.)
#[test]
fn forwards_and_replies_keep_the_marking() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    so.accredit_all(&server, &["alice", "bob"], "TLP:RED");
    let source = alice.create("Source", &["bob"]);
    let green = alice.create_with_ceiling("Green", &["bob"], "TLP:GREEN");
    let open = alice.create("Open", &["bob"]);
    bob.sync();
    for (subject, marking) in [("Red one", "TLP:RED"), ("Amber one", "TLP:AMBER")] {
        let out = bob.try_send_marked_in(&source, subject, marking);
        assert_ok(&out);
    }
    alice.sync();
    let inbox = alice.inbox();
    let id_of = |subject: &str| {
        inbox.iter().find(|l| l["subject"] == subject).unwrap()["id"]
            .as_i64()
            .unwrap()
            .to_string()
    };
    let (red, amber) = (id_of("Red one"), id_of("Amber one"));

    // TLP:RED: never, not even to the same people.
    let out = alice.run(&["forward", &red, "--conversation", &open]);
    assert_refused(&out, "TLP:RED");
    // Above the target's ceiling: refused.
    let out = alice.run(&["forward", &amber, "--conversation", &green]);
    assert_refused(&out, "above");
    // Within the rules: a new letter with the original and its marking.
    alice.json(&["forward", &amber, "--conversation", &open]);
    assert_eq!(bob.sync()["new_letters"], 1);
    let fwd = bob
        .inbox()
        .into_iter()
        .find(|l| l["subject"] == "Fwd: Amber one")
        .unwrap();
    assert_eq!(fwd["marking"], "TLP:AMBER");
    assert_eq!(fwd["conversation"], open.as_str());

    // A reply carries the thread's marking; it may raise it, not lower it.
    let reply = alice.json(&["reply", &amber, "--body", "Noted."]);
    assert!(reply["id"].is_i64());
    let lowered = alice.run(&["reply", &amber, "--body", "x", "--marking", "TLP:GREEN"]);
    assert_refused(&lowered, "never lower");
    alice.json(&["reply", &amber, "--body", "Raised.", "--marking", "TLP:RED"]);
    bob.sync();
    let markings: Vec<Value> = bob
        .inbox()
        .into_iter()
        .filter(|l| l["subject"] == "Re: Amber one")
        .map(|l| l["marking"].clone())
        .collect();
    assert_eq!(markings, ["TLP:AMBER", "TLP:RED"]);
}
