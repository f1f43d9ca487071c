//! Issue 8: devices are approved by their user, never by the server. A new
//! device of bob's is pending until one of his devices approves it by the
//! link code it shows; it reads nothing before, everything sent after. A
//! wrong code approves nothing. Revoking a device, by its user or by the
//! administrator, takes it out of every conversation: a copy of its home
//! reads nothing sent after the removal.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr, assert_refused, bob_on_laptop_and_phone};

#[test]
fn a_new_device_reads_only_once_approved_by_its_link_code() {
    let server = Server::start();
    let alice = server.device("alice");
    let laptop = server.device("bob");
    let conv = alice.start_conversation(&["bob"], "one", "before the phone");
    laptop.sync();

    let phone = server.device("bob");
    let code = phone.link_code.clone().unwrap();
    let me = phone.this_device();
    assert_eq!(me["status"], "pending");
    assert_eq!(me["link_code"], code.as_str());

    // Pending: alice's next letter does not reach it.
    alice.send_to(&["bob"], "two", "while pending");
    assert_eq!(phone.sync()["joined"], 0);
    assert_eq!(laptop.sync()["new_letters"], 1);

    // A wrong code is refused and approves nothing.
    let wrong: String = code
        .chars()
        .map(|c| match c {
            '0'..='8' => char::from(c as u8 + 1),
            '9' => '0',
            other => other,
        })
        .collect();
    let out = laptop.run(&["devices", "approve", &wrong]);
    assert_refused(&out, "link code");
    assert_eq!(phone.sync()["joined"], 0);

    // The right code: the laptop approves it and adds it to its
    // conversations in the same sync.
    laptop.ok(&["devices", "approve", &code]);
    let statuses = laptop.json(&["devices"]);
    assert!(
        statuses
            .as_array()
            .unwrap()
            .iter()
            .all(|d| d["status"] == "approved"),
        "{statuses}"
    );
    assert_eq!(phone.sync()["joined"], 1);
    alice.send_in(&conv, "three", "after the approval");
    assert_eq!(phone.sync()["new_letters"], 1);
    assert_eq!(phone.subjects(), ["three"]);
    // Alice added nobody herself and saw nothing wrong.
    assert!(alice.alert_kinds().is_empty(), "{:?}", alice.alert_kinds());
}

#[test]
fn a_device_revoked_by_its_user_reads_nothing_after_its_removal() {
    let server = Server::start();
    let (alice, laptop, phone, conv) = bob_on_laptop_and_phone(&server);
    assert_eq!(phone.subjects(), ["one"]);
    // The thief's copy of the phone, taken before it is revoked.
    let stolen = phone.copy();

    laptop.ok(&["devices", "revoke", &phone.device_id()]);
    // The laptop removed the phone from its conversations at once.
    let members = laptop.members_of(&conv, "bob");
    assert_eq!(members, serde_json::json!([laptop.device_id()]));
    alice.sync();
    alice.send_in(&conv, "two", "after the revocation");
    assert_eq!(laptop.sync()["new_letters"], 1);

    // The server refuses the phone at once; the copy reads nothing, even
    // with the ciphertext handed to it.
    let out = stolen.run(&["sync", "--json"]);
    assert_refused(&out, "device_revoked");
    assert!(!stolen.subjects().contains(&"two".to_owned()));
}

#[test]
fn a_device_the_administrator_revokes_is_removed_by_the_members() {
    let server = Server::start();
    let alice = server.device("alice");
    let laptop = server.device("bob");
    let phone = server.second_device("bob", &laptop);
    let conv = alice.start_conversation(&["bob"], "one", "to both");
    phone.sync();
    laptop.sync();
    let stolen = phone.copy();

    // A stolen laptop, the user unreachable: the administrator revokes.
    server.admin(&["revoke", &addr("bob"), &phone.device_id()]);
    // The next member to sync (here alice, a peer) removes it.
    let mut removed = 0;
    for _ in 0..50 {
        removed = alice.sync()["devices_removed"].as_u64().unwrap();
        if removed > 0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    assert_eq!(removed, 1);
    let members = alice.members_of(&conv, "bob");
    assert_eq!(members, serde_json::json!([laptop.device_id()]));
    alice.send_in(&conv, "two", "after the revocation");
    assert_eq!(laptop.sync()["new_letters"], 1);
    assert!(!stolen.run(&["sync"]).status.success());
    assert!(!stolen.subjects().contains(&"two".to_owned()));
    // Bob's laptop sees the revocation in his entry's history.
    assert!(laptop.alert_kinds().iter().all(|k| k != "refused_message"));
}
