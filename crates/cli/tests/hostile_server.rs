//! A malicious server, played through its own database (the intruder who
//! holds the disk): it replays letters, duplicates inbox rows, moves a
//! letter into another conversation (A9), hands out garbage, flips a byte of
//! a ciphertext and lies about who sent a letter. Bob's device shows nothing
//! twice, refuses and reports what fails verification (`rejected`, with an
//! alert each), shows only what MLS vouches for, and keeps working.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, addr};
use rusqlite::{Connection, params};
use serde_json::Value;

/// An application payload as the server stores it.
struct Stored {
    id: i64,
    conversation: Vec<u8>,
    bytes: Vec<u8>,
}

/// The newest application payload alice sent in `conv` (hex id).
fn newest_from_alice(db: &Connection, conv: &str) -> Stored {
    db.query_row(
        "SELECT id, conversation, bytes FROM payloads
         WHERE kind = 3 AND sender_user = ?1 AND conversation = ?2
         ORDER BY id DESC LIMIT 1",
        params![addr("alice"), hex::decode(conv).unwrap()],
        |r| {
            Ok(Stored {
                id: r.get(0)?,
                conversation: r.get(1)?,
                bytes: r.get(2)?,
            })
        },
    )
    .unwrap()
}

fn device_of(db: &Connection, user: &str) -> String {
    db.query_row(
        "SELECT device FROM devices WHERE user = ?1",
        [addr(user)],
        |r| r.get(0),
    )
    .unwrap()
}

/// Queues `bytes` for bob as an application message from alice in
/// `conversation`: a new payload row (no client message id) and an inbox row.
fn inject(db: &Connection, bob_device: &str, conversation: &[u8], bytes: &[u8]) {
    let alice_device = device_of(db, "alice");
    db.execute(
        "INSERT INTO payloads (conversation, sender_user, sender_device, kind, bytes, created_at_ms)
         VALUES (?1, ?2, ?3, 3, ?4, 0)",
        params![conversation, addr("alice"), alice_device, bytes],
    )
    .unwrap();
    let payload = db.last_insert_rowid();
    db.execute(
        "INSERT INTO inbox (user, device, payload_id) VALUES (?1, ?2, ?3)",
        params![addr("bob"), bob_device, payload],
    )
    .unwrap();
}

fn count(report: &Value, field: &str) -> u64 {
    report[field]
        .as_u64()
        .unwrap_or_else(|| panic!("no {field} in {report}"))
}

/// Alerts for refused messages that a sync report carries.
fn refused_alerts(report: &Value) -> usize {
    report["alerts"]
        .as_array()
        .map(|a| a.iter().filter(|a| a["kind"] == "refused_message").count())
        .unwrap_or(0)
}

#[test]
fn replays_moves_garbage_and_lies_are_refused_and_the_device_keeps_working() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");

    // Two conversations between alice and bob: a direct one and a cell.
    let direct = alice.send_to(&["bob"], "One", "First letter.")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    let cell = alice.create("Cell", &["bob"]);
    let db = server.db();
    let bob_device = device_of(&db, "bob");
    // The intruder keeps a copy of letter One's ciphertext before bob reads
    // it (the server forgets delivered bytes once acknowledged).
    let one = newest_from_alice(&db, &direct);
    let report = bob.sync();
    assert_eq!(count(&report, "new_letters"), 1, "{report}");
    assert_eq!(count(&report, "rejected"), 0, "{report}");
    assert_eq!(bob.subjects(), ["One"]);

    // Letter Two: the server queues its inbox row twice (a duplicate).
    alice.send_in(&direct, "Two", "Second letter.");
    let two = newest_from_alice(&db, &direct);
    db.execute(
        "INSERT INTO inbox (user, device, payload_id) VALUES (?1, ?2, ?3)",
        params![addr("bob"), bob_device, two.id],
    )
    .unwrap();
    // Letter Three: one byte of its ciphertext is flipped (AEAD tag fails).
    alice.send_in(&direct, "Three", "Third letter.");
    let three = newest_from_alice(&db, &direct);
    let mut flipped = three.bytes.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    db.execute(
        "UPDATE payloads SET bytes = ?1 WHERE id = ?2",
        params![flipped, three.id],
    )
    .unwrap();
    // Letter Four: the server claims mallory sent it.
    alice.send_in(&direct, "Four", "Fourth letter.");
    let four = newest_from_alice(&db, &direct);
    db.execute(
        "UPDATE payloads SET sender_user = ?1, sender_device = ?2 WHERE id = ?3",
        params![addr("mallory"), "0123456789abcdef", four.id],
    )
    .unwrap();
    // Letter One replayed in its own conversation, then moved into the cell
    // (A9), and garbage of a plausible size in the cell.
    inject(&db, &bob_device, &one.conversation, &one.bytes);
    inject(&db, &bob_device, &hex::decode(&cell).unwrap(), &one.bytes);
    let garbage: Vec<u8> = (0..one.bytes.len()).map(|_| rand::random()).collect();
    inject(&db, &bob_device, &hex::decode(&cell).unwrap(), &garbage);
    // And MLS framing with garbage inside: letter Two's header, random rest.
    let mut framed = two.bytes.clone();
    let half = framed.len() / 2;
    for b in &mut framed[half..] {
        *b = rand::random();
    }
    inject(&db, &bob_device, &two.conversation, &framed);

    let report = bob.sync();
    // Two and Four are new; the duplicate of Two, Three (flipped), the
    // replay and the move of One, the garbage and the framed garbage are
    // refused, each with an alert.
    assert_eq!(count(&report, "new_letters"), 2, "{report}");
    assert_eq!(count(&report, "rejected"), 6, "{report}");
    assert_eq!(refused_alerts(&report), 6, "{report}");
    let inbox = bob.inbox();
    let subjects: Vec<&str> = inbox
        .iter()
        .map(|l| l["subject"].as_str().unwrap())
        .collect();
    assert_eq!(subjects, ["One", "Two", "Four"], "nothing twice, no Three");
    for l in &inbox {
        // Shown as MLS says: from alice, in the conversation it was sent in.
        assert_eq!(l["from"], addr("alice"), "{l}");
        assert_eq!(l["conversation"], direct.as_str(), "{l}");
    }
    let four = bob.read(inbox[2]["id"].as_i64().unwrap());
    assert_eq!(four["body"], "Fourth letter.");
    assert_eq!(four["from"], addr("alice"));

    // Nothing is refused twice or shown late: a second sync is empty.
    let report = bob.sync();
    assert_eq!(count(&report, "new_letters"), 0, "{report}");
    assert_eq!(count(&report, "rejected"), 0, "{report}");

    // And both devices keep working, in both conversations and directions.
    alice.send_in(&direct, "Five", "After the storm.");
    alice.send_in(&cell, "Six", "In the cell.");
    let report = bob.sync();
    assert_eq!(count(&report, "new_letters"), 2, "{report}");
    assert_eq!(count(&report, "rejected"), 0, "{report}");
    assert_eq!(bob.subjects(), ["One", "Two", "Four", "Five", "Six"]);
    let six = bob.inbox()[4]["id"].as_i64().unwrap();
    bob.ok(&["reply", &six.to_string(), "--body", "Received."]);
    let report = alice.sync();
    assert_eq!(count(&report, "new_letters"), 1, "{report}");
    assert_eq!(count(&report, "rejected"), 0, "{report}");
    assert_eq!(alice.subjects(), ["Re: Six"]);
}

/// C8: the intruder keeps a copy of bob's one-time key packages and, once
/// one was used, hands it out again. Bob's device deleted that package's
/// private key when it joined, so the second Welcome cannot be opened: it is
/// refused with an alert, and the first conversation is unaffected.
#[test]
fn a_consumed_key_package_served_again_is_refused() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let db = server.db();
    let packages = |db: &Connection| -> Vec<Vec<u8>> {
        let mut stmt = db
            .prepare("SELECT bytes FROM key_packages WHERE user = ?1 AND last_resort = 0")
            .unwrap();
        stmt.query_map([addr("bob")], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap()
    };
    let before = packages(&db);
    let first = alice.create("first", &["bob"]);
    assert_eq!(count(&bob.sync(), "joined"), 1);
    let after = packages(&db);
    let used: Vec<&Vec<u8>> = before.iter().filter(|p| !after.contains(p)).collect();
    assert_eq!(used.len(), 1);
    db.execute(
        "UPDATE key_packages SET bytes = ?1 WHERE user = ?2 AND last_resort = 0",
        params![used[0], addr("bob")],
    )
    .unwrap();

    let second = alice.create("second", &["bob"]);
    let report = bob.sync();
    assert_eq!(count(&report, "joined"), 0, "{report}");
    // The Welcome, then the conversation's settings sealed for it.
    assert_eq!(count(&report, "rejected"), 2, "{report}");
    assert_eq!(refused_alerts(&report), 2, "{report}");
    let detail = report["alerts"][0]["detail"].as_str().unwrap();
    assert!(detail.contains("NoMatchingKeyPackage"), "{detail}");
    let list = bob.json(&["conversation", "list"]);
    let ids: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, [first.as_str()], "not in {second}");

    alice.send_in(&first, "Still here", "The first conversation goes on.");
    assert_eq!(count(&bob.sync(), "new_letters"), 1);
}

/// A1: the intruder adds mallory's device to the server's member list of a
/// conversation without any commit. Clients encrypt to the MLS roster only,
/// so mallory gets ciphertext she cannot open; alice's device notices that
/// the server fanned her letter out to one device too many.
#[test]
fn a_ghost_member_in_the_servers_roster_reads_nothing_and_is_noticed() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let mallory = server.device("mallory");
    let conv = alice.create("ghost", &["bob"]);
    bob.sync();
    let db = server.db();
    db.execute(
        "INSERT INTO members (conversation, user, device) VALUES (?1, ?2, ?3)",
        params![
            hex::decode(&conv).unwrap(),
            addr("mallory"),
            device_of(&db, "mallory")
        ],
    )
    .unwrap();

    alice.send_in(&conv, "Not for mallory", "Encrypted to alice and bob only.");
    assert_eq!(alice.alert_kinds(), ["roster_mismatch"]);
    assert_eq!(count(&bob.sync(), "new_letters"), 1);
    let report = mallory.sync();
    assert_eq!(count(&report, "new_letters"), 0, "{report}");
    assert_eq!(count(&report, "rejected"), 1, "{report}");
    assert!(mallory.inbox().is_empty());
}
