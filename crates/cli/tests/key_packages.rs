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
