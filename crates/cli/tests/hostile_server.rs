//! A malicious server, played through its own database (the intruder who
//! holds the disk): it replays letters, duplicates inbox rows, moves a
//! letter into another conversation (A9), hands out garbage, flips a byte of
//! a ciphertext and lies about who sent a letter. Bob's device shows nothing
//! twice, refuses and reports what fails verification (`rejected`, with an
//! alert each), shows only what MLS vouches for, and keeps working.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, addr, log};
use rusqlite::{Connection, params};
use serde_json::Value;

/// The newest letter alice sent in `conv` (hex id), as the server stores it.
fn newest_from_alice(db: &Connection, conv: &str) -> log::Row {
    log::newest(db, log::APPLICATION, conv, Some(&addr("alice"))).unwrap()
}

fn device_of(db: &Connection, user: &str) -> String {
    db.query_row(
        "SELECT device FROM devices WHERE user = ?1",
        [addr(user)],
        |r| r.get(0),
    )
    .unwrap()
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
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");

    // Two conversations between alice and bob: a direct one and a cell.
    let direct = alice.send_to(&["bob"], "One", "First letter.")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    let cell = alice.create("Cell", &["bob"]);
    let db = server.db();
    // The intruder keeps a copy of letter One's ciphertext before bob reads
    // it (the server forgets delivered bytes once everyone has read them).
    let one = newest_from_alice(&db, &direct);
    let report = bob.sync();
    assert_eq!(count(&report, "new_letters"), 1, "{report}");
    assert_eq!(count(&report, "rejected"), 0, "{report}");
    assert_eq!(bob.subjects(), ["One"]);

    alice.send_in(&direct, "Two", "Second letter.");
    let two = newest_from_alice(&db, &direct);
    alice.send_in(&direct, "Three", "Third letter.");
    let three = newest_from_alice(&db, &direct);
    alice.send_in(&direct, "Four", "Fourth letter.");
    let four = newest_from_alice(&db, &direct);
    // Edits of stored rows, on the running server. Letter Three: one byte
    // of its ciphertext is flipped (AEAD tag fails).
    let mut flipped = three.bytes.clone();
    *flipped.last_mut().unwrap() ^= 0x01;
    db.execute(
        "UPDATE log SET bytes = ?1 WHERE seq = ?2",
        params![flipped, three.seq],
    )
    .unwrap();
    // Letter Four: the server claims mallory sent it.
    let mallory = log::num_of(&db, &addr("mallory"), "0123456789abcdef");
    db.execute(
        "UPDATE log SET sender = ?1 WHERE seq = ?2",
        params![mallory, four.seq],
    )
    .unwrap();
    // Rows added behind the server's back need it stopped.
    drop(db);
    server.kill9();
    let db = server.db();
    let (bob_n, alice_n) = (
        log::device_num(&db, &addr("bob")),
        log::device_num(&db, &addr("alice")),
    );
    let cell_n = log::conv_num(&db, &cell);
    let inject = |conv: i64, bytes: &[u8]| {
        log::deliver(&db, bob_n, conv, alice_n, log::APPLICATION, bytes);
    };
    // Letter Two queued twice (a duplicate); letter One replayed in its
    // own conversation, then moved into the cell (A9); garbage of a
    // plausible size in the cell.
    inject(two.conv, &two.bytes);
    inject(one.conv, &one.bytes);
    inject(cell_n, &one.bytes);
    let garbage: Vec<u8> = (0..one.bytes.len()).map(|_| rand::random()).collect();
    inject(cell_n, &garbage);
    // And MLS framing with garbage inside: letter Two's header, random rest.
    let mut framed = two.bytes.clone();
    let half = framed.len() / 2;
    for b in &mut framed[half..] {
        *b = rand::random();
    }
    inject(two.conv, &framed);
    drop(db);
    server.restart();

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
    // Alice reads bob's answer; letter Four, which the server now says
    // mallory sent, reaches her too (the log skips only a device's own
    // rows): her device refuses its own letter reflected back.
    let report = alice.sync();
    assert_eq!(count(&report, "new_letters"), 1, "{report}");
    assert_eq!(count(&report, "rejected"), 1, "{report}");
    assert_eq!(refused_alerts(&report), 1, "{report}");
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
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let mallory = server.device("mallory");
    let conv = alice.create("ghost", &["bob"]);
    bob.sync();
    server.kill9();
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
    db.execute(
        "INSERT INTO memberships (device, conv, from_seq, to_seq)
         VALUES (?1, ?2, coalesce((SELECT seq FROM log_head), 0), NULL)",
        params![
            log::device_num(&db, &addr("mallory")),
            log::conv_num(&db, &conv)
        ],
    )
    .unwrap();
    drop(db);
    server.restart();

    alice.send_in(&conv, "Not for mallory", "Encrypted to alice and bob only.");
    assert_eq!(alice.alert_kinds(), ["roster_mismatch"]);
    assert_eq!(count(&bob.sync(), "new_letters"), 1);
    let report = mallory.sync();
    assert_eq!(count(&report, "new_letters"), 0, "{report}");
    assert_eq!(count(&report, "rejected"), 1, "{report}");
    assert!(mallory.inbox().is_empty());
}
