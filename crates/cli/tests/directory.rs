//! Key directory (issue 3) played against a real server: new devices are
//! seen by the user's other devices (I6), a device slipped into the server's
//! database is used by nobody and raises alerts (A6), safety codes match on
//! both sides, and an auditor follows the directory from outside.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr};

#[test]
fn a_new_device_is_seen_by_the_users_other_devices() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob_laptop = server.device("bob");
    alice.send_to(&["bob"], "hello", "hello");
    assert_eq!(bob_laptop.sync()["new_devices"], 0);

    let bob_phone = server.device("bob");
    let report = bob_laptop.sync();
    assert_eq!(report["new_devices"], 1);
    assert_eq!(report["alerts"][0]["kind"], "new_device");
    assert_eq!(bob_laptop.alert_kinds(), vec!["new_device"]);
    // Seen once: the next sync is quiet.
    assert_eq!(bob_laptop.sync()["new_devices"], 0);
    // The phone knew the laptop from its enrolment: no alert there.
    bob_phone.sync();
    assert!(bob_phone.alert_kinds().is_empty());
    assert!(alice.alert_kinds().is_empty());
}

#[test]
fn a_device_row_slipped_into_the_database_is_refused_and_alerted() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let mallory = server.device("mallory");
    let devices = mallory.json(&["devices"]);
    let rogue = devices[0]["device"].as_str().unwrap().to_owned();

    // The intruder holds the database: mallory's device (and its key
    // packages) becomes one of alice's, without passing the directory.
    let db = server.db();
    db.execute_batch("PRAGMA foreign_keys = OFF").unwrap();
    // Numbered after alice's own, and "approved" as far as the server knows.
    db.execute(
        "UPDATE devices SET number = 99 WHERE user = ?1 AND device = ?2",
        rusqlite::params![addr("mallory"), rogue],
    )
    .unwrap();
    for table in ["devices", "key_packages"] {
        db.execute(
            &format!("UPDATE {table} SET user = ?1 WHERE user = ?2 AND device = ?3"),
            rusqlite::params![addr("alice"), addr("mallory"), rogue],
        )
        .unwrap();
    }
    drop(db);

    // Bob will not add it: creating a conversation with alice fails closed.
    let out = bob.run(&[
        "conversation",
        "create",
        "--name",
        "x",
        "--member",
        &addr("alice"),
    ]);
    assert!(!out.status.success());
    assert!(
        bob.alert_kinds()
            .contains(&"key_not_in_directory".to_owned())
    );

    // Alice's device will not add it to her conversations, and alerts.
    alice.send_to(&["bob"], "before", "x");
    alice.sync();
    assert!(
        alice
            .alert_kinds()
            .contains(&"key_not_in_directory".to_owned())
    );
    let list = alice.json(&["conversation", "list"]);
    let mine = list[0]["members"][addr("alice")].as_array().unwrap().len();
    assert_eq!(mine, 1, "the slipped-in device is in no conversation");
}

#[test]
fn safety_codes_match_on_both_sides() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let a = alice.json(&["verify", &addr("bob")])["safety_code"]
        .as_str()
        .unwrap()
        .to_owned();
    let b = bob.json(&["verify", &addr("alice")])["safety_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a, b);
    assert_eq!(a.split(' ').count(), 12);
    assert!(
        !alice
            .run(&["verify", &addr("bob"), "--code", "12345"])
            .status
            .success()
    );
    alice.ok(&["verify", &addr("bob"), "--code", &a]);
    // The code is over identities: a device bob adds and approves does not
    // change it.
    let _bob_phone = server.second_device("bob", &bob);
    let c = alice.json(&["verify", &addr("bob")])["safety_code"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(a, c);
}

#[test]
fn an_auditor_follows_the_directory() {
    let server = Server::start();
    let _alice = server.device("alice");
    let state = server.dir.path().join("audit.json");
    let audit = |key: Option<&str>| {
        let mut cmd = std::process::Command::new(common::valise_bin());
        cmd.args(["audit", &server.url, "--json", "--state"])
            .arg(&state)
            .arg("--ca")
            .arg(server.ca());
        if let Some(k) = key {
            cmd.args(["--directory-key", k]);
        }
        cmd.output().unwrap()
    };
    let key = server.directory_key();
    let first = audit(Some(&key));
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let _bob = server.device("bob");
    let _carol = server.device("carol");
    let second = audit(None);
    assert!(
        second.status.success(),
        "{}",
        String::from_utf8_lossy(&second.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&second.stdout).unwrap();
    assert!(report["to_epoch"].as_u64().unwrap() > report["from_epoch"].as_u64().unwrap());
    assert!(report["proofs_checked"].as_u64().unwrap() >= 1);

    // An auditor holding another key refuses the server's roots.
    std::fs::remove_file(&state).unwrap();
    let wrong = audit(Some(&"11".repeat(32)));
    assert!(!wrong.status.success());
}
