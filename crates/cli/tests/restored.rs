//! F7: the server is restored from an older copy of its data (a backup
//! taken before letters bob has already read). Bob's inbox cursor names a
//! log position the restored server never handed out: his device says so
//! (`server_restored`), reads his inbox again from the start without
//! showing anything twice or alerting on what he had, still refuses (and
//! alerts on) what he never had, and goes on receiving.

mod common;
use common::{Server, addr, log};

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
    assert_eq!(bob.alert_kinds(), ["server_restored", "refused_message"]);
    assert_eq!(bob.subjects(), ["One", "Two"]);
    // Once is enough: the next sync reads on quietly.
    alice.send_in(&conv, "Three", "On the restored server.");
    let report = bob.sync();
    assert_eq!(report["new_letters"], 1, "{report}");
    assert_eq!(bob.subjects(), ["One", "Two", "Three"]);
    assert_eq!(bob.alert_kinds(), ["server_restored", "refused_message"]);
}
