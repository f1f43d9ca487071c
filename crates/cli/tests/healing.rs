//! Issue 8, healing (I3, D4): an active device renews its own leaf's keys
//! in each conversation at least every 24 hours, so a copy of its home
//! taken before reads nothing sent after. The test build's clock is moved
//! a day on (`VALISE_TEST_CLOCK_OFFSET_MS`, honoured only by test builds).
//! Also: an identity reset by the administrator is loud, and nothing is
//! written to the new identity before someone compares safety codes.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr, assert_ok, assert_refused};

const A_DAY_LATER: &str = "90000000"; // 25 hours, in ms

#[test]
fn a_copy_of_a_home_taken_before_the_daily_update_reads_nothing_after() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.start_conversation(&["bob"], "one", "before");
    bob.sync();
    let copy = bob.copy();

    // A day on, bob's next sync renews his keys in the conversation.
    let out = bob.run_env(
        &["sync", "--json"],
        &[("VALISE_TEST_CLOCK_OFFSET_MS", A_DAY_LATER)],
    );
    assert_ok(&out);
    let report: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(report["updated"], 1, "{report}");
    // Not again before another day.
    assert_eq!(bob.sync()["updated"], 0);

    alice.send_in(&conv, "two", "after the update");
    // The copy is bob's device to the server, which hands it what bob read
    // since the copy was taken: bob's own update, which the copy did not
    // make (another copy of this device is in use: said), then the letter,
    // which it cannot open.
    let report = copy.sync();
    assert_eq!(report["new_letters"], 0, "{report}");
    assert!(!copy.subjects().contains(&"two".to_owned()));
    let kinds = copy.alert_kinds();
    assert!(kinds.contains(&"device_cloned".to_owned()), "{kinds:?}");
}

#[test]
fn an_identity_reset_is_loud_and_nothing_goes_to_it_unverified() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.start_conversation(&["bob"], "one", "hello");
    bob.sync();

    // Bob lost every device; the administrator resets his account.
    let code = server.admin(&["invite", "--reset", &addr("bob")]);
    let new_bob = server.enroll("bob", &code);
    assert!(new_bob.link_code.is_none(), "it founds the new identity");
    assert!(
        !bob.run(&["sync"]).status.success(),
        "the old device is revoked"
    );

    alice.sync();
    assert!(alice.has_alert("identity_changed"));
    // The old device left the conversation; the new one was not added.
    let members = alice.conversation(&conv)["members"].clone();
    assert!(members.get(addr("bob")).is_none(), "{members}");
    let out = alice.try_send_to("bob", "s");
    assert_refused(&out, "verify");
    assert_eq!(new_bob.sync()["joined"], 0);

    // After comparing codes, the waiting letter goes.
    let theirs = new_bob.json(&["verify", &addr("alice")])["safety_code"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok(&["verify", &addr("bob"), "--code", &theirs]);
    alice.sync();
    assert_eq!(new_bob.sync()["new_letters"], 1);
}
