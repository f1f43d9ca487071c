//! F7: the server is restored from an older copy of its data (a backup
//! taken before letters bob has already read). Bob's inbox cursor names a
//! log position the restored server never handed out: his device says so
//! (`server_restored`), reads his inbox again from the start without
//! showing anything twice or alerting on what he had, still refuses (and
//! alerts on) what he never had, and goes on receiving.

mod common;
use common::{Server, addr, log, settle};

#[test]
fn a_server_restored_from_a_backup_is_noticed_and_nothing_is_shown_twice() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.send_to(&["bob"], "One", "Before the backup.")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    let backup = server.backup();
    alice.send_in(&conv, "Two", "After the backup.");
    assert_eq!(bob.sync()["new_letters"], 2);
    assert!(bob.alert_kinds().is_empty());

    // The operator (or the intruder) puts the old copy back.
    server.kill9();
    let db = server.data().join("valised.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    // And, restored or not, it slips garbage into bob's inbox: the re-read
    // mutes replays of what he had, nothing else.
    let conn = server.db();
    log::deliver(
        &conn,
        log::device_num(&conn, &addr("bob")),
        log::conv_num(&conn, &conv),
        log::device_num(&conn, &addr("alice")),
        log::APPLICATION,
        &[0, 1, 0, 2, 0xde, 0xad],
    );
    drop(conn);
    server.restart();

    let report = bob.sync();
    // Read again from the start: what it had applied comes back and is
    // recognised, without an alert each.
    assert_eq!(report["new_letters"], 0, "{report}");
    assert_eq!(report["rejected"], 1, "{report}");
    assert!(report["reread"].as_u64().unwrap() >= 2, "{report}");
    // The copy also predates the key renewal bob committed on joining:
    // the restored server is an epoch behind him, a rollback he is told of
    // at once (and whose state he does not take back on his own).
    let restored = ["server_restored", "refused_message", "rollback", "rollback"];
    assert_eq!(bob.alert_kinds(), restored);
    assert_eq!(bob.subjects(), ["One", "Two"]);
    // Once is enough: the next sync reads on quietly.
    alice.send_in(&conv, "Three", "On the restored server.");
    let report = bob.sync();
    assert_eq!(report["new_letters"], 1, "{report}");
    assert_eq!(bob.subjects(), ["One", "Two", "Three"]);
    assert_eq!(bob.alert_kinds(), restored);
}

/// What the restored copy lost is sent again by its sender: carol, who had
/// not read it, gets it; bob, who had, sees it once; nobody is alerted but
/// for the restore itself.
#[test]
fn letters_the_restored_server_lost_are_sent_again() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.create("Restore", &["bob", "carol"]);
    alice.send_in(&conv, "One", "Before the backup.");
    // Everyone at one epoch (joiners renew their keys) before the copy.
    settle(&[&alice, &bob, &carol]);
    let backup = server.backup();
    alice.send_in(&conv, "Two", "After the backup.");
    assert_eq!(bob.sync()["new_letters"], 1);
    // Alice reads on past her own letter: her cursor names it.
    alice.sync();

    server.kill9();
    let db = server.data().join("valised.db");
    for suffix in ["-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{}{suffix}", db.display()));
    }
    std::fs::copy(&backup, &db).unwrap();
    server.restart();

    // Carol's cursor is older than the copy: nothing tells her, and "Two"
    // is not there to read.
    assert_eq!(carol.sync()["new_letters"], 0);
    let report = alice.sync();
    assert_eq!(report["resent"], 1, "{report}");
    assert_eq!(alice.alert_kinds(), ["server_restored"]);

    let report = carol.sync();
    assert_eq!(report["new_letters"], 1, "{report}");
    assert_eq!(carol.subjects(), ["One", "Two"]);
    let report = bob.sync();
    assert_eq!(report["new_letters"], 0, "{report}");
    assert_eq!(report["rejected"], 0, "{report}");
    assert_eq!(bob.subjects(), ["One", "Two"]);
    assert_eq!(bob.alert_kinds(), ["server_restored"]);
    // Sent once more, never again.
    assert_eq!(alice.sync()["resent"], 0);
    alice.send_in(&conv, "Three", "On the restored server.");
    assert_eq!(carol.sync()["new_letters"], 1);
    assert_eq!(bob.sync()["new_letters"], 1);
    assert_eq!(alice.alert_kinds(), ["server_restored"]);
    assert_eq!(bob.alert_kinds(), ["server_restored"]);
    // Carol, whose cursor the copy still knew, was never told of the
    // restore; that alice's first letter of the epoch never reached her is
    // true (its content came again, under a new number), and said.
    assert_eq!(carol.alert_kinds(), ["letters_withheld"]);
}
