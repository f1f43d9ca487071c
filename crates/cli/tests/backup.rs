//! The backup and restore of docs/OPERATIONS.md, step by step: a backup
//! taken with `valised admin backup` while the server runs and letters
//! flow, more letters, the server stopped, the database put back from the
//! backup, the server started again. The server's keys are unchanged, its
//! audit log verifies, the backup holds no letter content, and bob's device notices that the
//! server went back in time (`server_restored`) without showing anything
//! twice, then goes on receiving. And the limit of a restore: one that
//! goes back past a key directory epoch its devices saw is a rollback to
//! them.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Server, valised_bin};

/// In every subject and body: must never be found in the backup.
const CANARY: &str = "canary-7f3a9c1e";

#[test]
fn a_backup_taken_live_restores_and_the_client_notices() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.send_to(&["bob"], &format!("One {CANARY}"), CANARY)["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(bob.sync()["new_letters"], 1);
    let info = server.admin(&["info", "--json"]);

    // OPERATIONS.md, "Backup": the database, live.
    let backup = server.dir.path().join("valised-backup.db");
    let said = server.admin(&["backup", "--out", backup.to_str().unwrap()]);
    assert!(said.contains("not in it: the keys"), "{said}");
    let bytes = std::fs::read(&backup).unwrap();
    assert!(
        !bytes.windows(CANARY.len()).any(|w| w == CANARY.as_bytes()),
        "letter content in the backup"
    );

    alice.send_in(&conv, &format!("Two {CANARY}"), CANARY);
    assert_eq!(bob.sync()["new_letters"], 1);

    // OPERATIONS.md, "Restore": stop, set the database and its WAL aside,
    // put the backup in its place, start.
    server.kill9();
    let data = server.data();
    let aside = server.dir.path().join("before-restore");
    std::fs::create_dir(&aside).unwrap();
    for name in ["valised.db", "valised.db-wal", "valised.db-shm"] {
        let from = data.join(name);
        if from.exists() {
            std::fs::rename(&from, aside.join(name)).unwrap();
        }
    }
    std::fs::copy(&backup, data.join("valised.db")).unwrap();
    server.restart();
    assert_eq!(server.admin(&["info", "--json"]), info, "the keys changed");
    // OPERATIONS.md: then verify the restored audit log.
    let verified = std::process::Command::new(valised_bin())
        .args(["audit", "verify", "--json", "--data"])
        .arg(&data)
        .output()
        .unwrap();
    let verdict: serde_json::Value = serde_json::from_slice(&verified.stdout).unwrap();
    assert!(verified.status.success(), "{verdict}");
    assert_eq!(verdict["ok"], true, "{verdict}");

    let report = bob.sync();
    assert_eq!(report["new_letters"], 0, "{report}");
    assert_eq!(bob.alert_kinds(), ["server_restored"]);
    let subjects = [format!("One {CANARY}"), format!("Two {CANARY}")];
    assert_eq!(bob.subjects(), subjects);

    // The restored server serves on; the next sync is quiet.
    alice.send_in(&conv, "Three", "After the restore.");
    let report = bob.sync();
    assert_eq!(report["new_letters"], 1, "{report}");
    assert_eq!(bob.alert_kinds(), ["server_restored"]);
}

/// The limit OPERATIONS.md warns of: a restore to before a key directory
/// epoch that devices have seen is, to them, the directory rolled back.
#[test]
fn a_restore_across_a_directory_epoch_is_a_rollback_to_devices() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "One", "Before the backup.");
    assert_eq!(bob.sync()["new_letters"], 1);
    let backup = server.dir.path().join("valised-backup.db");
    server.admin(&["backup", "--out", backup.to_str().unwrap()]);
    // A new epoch that bob's device sees: carol enrols and alice writes to her.
    let _carol = server.device("carol");
    alice.send_to(&["bob", "carol"], "Two", "After the backup.");
    assert_eq!(bob.sync()["new_letters"], 1);

    server.kill9();
    let data = server.data();
    for name in ["valised.db", "valised.db-wal", "valised.db-shm"] {
        let _ = std::fs::remove_file(data.join(name));
    }
    std::fs::copy(&backup, data.join("valised.db")).unwrap();
    server.restart();
    // Bob's device refuses the older directory and says why; it cannot
    // tell an honest restore from an intruder's rollback.
    let out = bob.run(&["sync", "--json"]);
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    let err: serde_json::Value = serde_json::from_str(stderr.lines().last().unwrap()).unwrap();
    assert_eq!(err["error"], "directory", "{err}");
    assert!(
        err["message"].as_str().unwrap().contains("rollback"),
        "{err}"
    );
    // The copy also predates the conversation alice made with carol: bob's
    // device says the server lost it.
    assert_eq!(
        bob.alert_kinds(),
        ["server_restored", "rollback", "directory_conflict"]
    );
}
