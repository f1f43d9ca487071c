//! G5: a device's one-time key packages run out (here: deleted from the
//! server's database, as if claimed by as many adds). The next add uses its
//! last-resort package, the device still joins, and on its next sync it
//! alerts its owner and restocks, so the add after that is one-time again.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, addr};

fn one_time_stock(server: &Server, user: &str) -> i64 {
    server
        .db()
        .query_row(
            "SELECT count(*) FROM key_packages WHERE user = ?1 AND last_resort = 0",
            [addr(user)],
            |r| r.get(0),
        )
        .unwrap()
}

#[test]
fn exhausted_key_packages_fall_back_to_last_resort_and_alert() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    assert!(one_time_stock(&server, "bob") > 0);
    server
        .db()
        .execute(
            "DELETE FROM key_packages WHERE user = ?1 AND last_resort = 0",
            [addr("bob")],
        )
        .unwrap();

    let first = alice.create("first", &["bob"]);
    let report = bob.sync();
    assert_eq!(report["joined"], 1, "{report}");
    let alerts = bob.json(&["alerts"]);
    assert_eq!(alerts.as_array().unwrap().len(), 1, "{alerts}");
    assert_eq!(alerts[0]["kind"], "key_packages_exhausted");
    assert!(one_time_stock(&server, "bob") > 0, "restocked");

    // The last-resort package stays usable, and one-time ones are back.
    let second = alice.create("second", &["bob"]);
    assert_eq!(bob.sync()["joined"], 1);
    alice.send_in(&first, "One", "in the first");
    alice.send_in(&second, "Two", "in the second");
    assert_eq!(bob.sync()["new_letters"], 2);
    assert_eq!(bob.alert_kinds(), ["key_packages_exhausted"]);
}

/// 80 days back, in ms: key packages made then expire in 4 days.
const EIGHTY_DAYS_AGO: &str = "-6912000000";

/// Enrols `user` on a device whose clock is `offset_ms` off (its key
/// packages are made at that time), then syncs it with the real clock.
fn enrolled_in_the_past(server: &Server, user: &str, offset_ms: &str) -> common::Device {
    let code = server.invite(user);
    let home = server.dir.path().join(format!("home-{user}-past"));
    let clock = [("VALISE_TEST_CLOCK_OFFSET_MS", offset_ms)];
    let (dev, out) = server.try_enroll(home, user, &code, &[], &clock);
    common::assert_ok(&out);
    dev
}

#[test]
fn key_packages_are_replaced_before_they_expire() {
    let server = Server::start();
    let alice = server.device("alice");
    // Bob's packages were made 80 days ago: 4 days of their 84 are left.
    let bob = enrolled_in_the_past(&server, "bob", EIGHTY_DAYS_AGO);
    let old: Vec<Vec<u8>> = {
        let db = server.db();
        let mut stmt = db
            .prepare("SELECT bytes FROM key_packages WHERE user = ?1")
            .unwrap();
        stmt.query_map([addr("bob")], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    // His next sync replaces them all, the last-resort one included.
    bob.sync();
    let db = server.db();
    let mut stmt = db
        .prepare("SELECT bytes FROM key_packages WHERE user = ?1")
        .unwrap();
    let now: Vec<Vec<u8>> = stmt
        .query_map([addr("bob")], |r| r.get(0))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert!(!now.is_empty());
    assert!(
        now.iter().all(|p| !old.contains(p)),
        "every package replaced"
    );
    drop(stmt);
    drop(db);
    // Adding him raises no false alarm.
    alice.send_to(&["bob"], "hello", "after the rotation");
    assert_eq!(bob.sync()["new_letters"], 1);
    assert!(alice.alert_kinds().is_empty(), "{:?}", alice.alert_kinds());
}

#[test]
fn an_expired_key_package_is_never_handed_out() {
    let server = Server::start();
    let alice = server.device("alice");
    // Carol's packages were made 80 days ago; five days pass without her
    // syncing (the server's record of their expiry moved into the past).
    let carol = enrolled_in_the_past(&server, "carol", EIGHTY_DAYS_AGO);
    server
        .db()
        .execute(
            "UPDATE key_packages SET not_after = not_after - 5 * 86400 WHERE user = ?1",
            [addr("carol")],
        )
        .unwrap();
    // The server hands out none of them: adding carol fails plainly, with
    // no `key_not_in_directory` alarm on alice's side.
    let out = alice.try_send_to("carol", "s");
    assert!(!out.status.success());
    assert!(alice.alert_kinds().is_empty(), "{:?}", alice.alert_kinds());
    // Once carol syncs (and restocks), she can be written to.
    carol.sync();
    alice.send_to(&["carol"], "hello", "now");
    assert_eq!(carol.sync()["new_letters"], 1);
    assert!(alice.alert_kinds().is_empty(), "{:?}", alice.alert_kinds());
}
