//! I7 / A12: the server's audit log, attacked by whoever holds its disk.
//! Every server-side action lands in a Merkle tree with signed checkpoints;
//! an entry edited, deleted or swapped in the SQLite file fails `valised
//! audit verify`, and a log truncated or rolled back to a backup fails the
//! outside auditor (`valise audit-log`) that saw it before — while the
//! untouched log verifies.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::audit::{audit_log, entries, verify};
use common::{DOMAIN, Server, addr};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use valise_proto::audit::{Action, Entry};

/// A server that signs a checkpoint every second.
fn server() -> Server {
    Server::start_with(&["--checkpoint-interval-secs", "1"])
}

/// The error code of a failed `--json` run (on stderr).
fn failure(out: &Output) -> String {
    assert!(
        !out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let v: Value = serde_json::from_slice(&out.stderr)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    v["error"].as_str().unwrap().to_owned()
}

fn succeeded(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A copy of the data directory (the server stopped), to tamper with.
fn copy_of(server: &Server, name: &str) -> PathBuf {
    let to = server.dir.path().join(name);
    let status = Command::new("cp")
        .arg("-a")
        .arg(server.data())
        .arg(&to)
        .status()
        .unwrap();
    assert!(status.success());
    to
}

fn tamper(data: &Path, sql: &str) {
    let conn = rusqlite::Connection::open(data.join("valised.db")).unwrap();
    conn.execute_batch(sql).unwrap();
}

/// Some of everything: enrolments, logins, a letter (key packages claimed,
/// a conversation created, commits), an approval, an admin revocation, the
/// revoked device trying again.
fn activity(server: &Server, who: &str, peer: &str) {
    let first = server.device(who);
    let _peer = server.device(peer);
    first.send_to(&[peer], "Hello", "An audited day.");
    let phone = server.second_device(who, &first);
    let device_id = phone.address().rsplit('/').next().unwrap().to_owned();
    server.admin(&["revoke", &addr(who), &device_id]);
    let refused = phone.run(&["sync", "--json"]);
    assert!(!refused.status.success());
}

#[test]
fn every_action_is_logged_and_the_untouched_log_verifies() {
    let mut server = server();
    let state = server.dir.path().join("audit-log.json");
    // Pinned from what `valised init` printed.
    let first = succeeded(&audit_log(&server, &state, true, Some(&server.audit_key())));
    assert_eq!(first["from_size"], Value::Null);
    activity(&server, "alice", "bob");
    server.admin(&["users"]);
    // The next checkpoint covers everything; the auditor walks every entry.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let second = succeeded(&audit_log(&server, &state, true, None));
    assert!(second["to_size"].as_u64().unwrap() > first["to_size"].as_u64().unwrap());
    assert!(second["entries_checked"].as_u64().unwrap() > 10, "{second}");
    server.stop();

    let (ok, report) = verify(&server.data());
    assert!(ok, "{report}");
    let logged = entries(&server);
    let actions: Vec<Action> = logged.iter().map(|e| e.action).collect();
    for expected in [
        Action::ServerStarted,
        Action::InviteIssued,
        Action::Enrolment,
        Action::AuthSucceeded,
        Action::KeyPackagesClaimed,
        Action::ConversationCreated,
        Action::CommitAccepted,
        Action::DeviceApproved,
        Action::DeviceRevoked,
        Action::AuthFailed,
        Action::AdminCommand,
        Action::InboxRead,
        Action::ServerStopped,
    ] {
        assert!(
            actions.contains(&expected),
            "no {expected:?} in {actions:?}"
        );
    }
    // Who and from where: the admin's revocation names the device; the
    // revoked device's attempt is refused with its code, from loopback.
    let text = |e: &Entry| String::from_utf8(e.encode()).unwrap();
    let revoked = logged
        .iter()
        .find(|e| e.action == Action::DeviceRevoked)
        .unwrap();
    assert!(
        text(revoked).contains(r#""actor":"admin""#),
        "{}",
        text(revoked)
    );
    assert!(text(revoked).contains(&format!("alice@{DOMAIN}/")));
    let failed = logged
        .iter()
        .find(|e| e.action == Action::AuthFailed)
        .unwrap();
    assert!(text(failed).contains("device_revoked"), "{}", text(failed));
    assert_eq!(failed.from, Some("127.0.0.1".parse().unwrap()));
    // Inbox reads are summed, not one entry per poll; never content.
    let reads = actions.iter().filter(|a| **a == Action::InboxRead).count();
    assert!(reads <= 4 * 3, "{reads} inbox_read entries");
    assert!(logged.iter().all(|e| !text(e).contains("An audited day")));
    // Indices are contiguous from 0.
    assert!(logged.iter().enumerate().all(|(i, e)| e.index == i as u64));
}

#[test]
fn edited_deleted_and_swapped_entries_fail_verification() {
    let mut server = server();
    activity(&server, "alice", "bob");
    server.stop();
    assert!(verify(&server.data()).0);

    // An entry's bytes edited in place (the intruder hides whose device it was).
    let edited = copy_of(&server, "edited");
    tamper(
        &edited,
        "UPDATE audit_entries SET bytes = CAST(replace(CAST(bytes AS TEXT), 'alice', 'alicf') AS BLOB) \
         WHERE idx = (SELECT MIN(idx) FROM audit_entries WHERE CAST(bytes AS TEXT) LIKE '%alice%')",
    );
    let (ok, report) = verify(&edited);
    assert!(!ok);
    assert_eq!(report["code"], "audit_root_mismatch", "{report}");

    // An entry deleted (the failed login that gave the intruder away).
    let deleted = copy_of(&server, "deleted");
    tamper(
        &deleted,
        "DELETE FROM audit_entries WHERE CAST(bytes AS TEXT) LIKE '%auth_failed%'",
    );
    let (ok, report) = verify(&deleted);
    assert!(!ok);
    assert_eq!(report["code"], "audit_entry_missing", "{report}");

    // Two entries swapped.
    let swapped = copy_of(&server, "swapped");
    tamper(
        &swapped,
        "UPDATE audit_entries SET idx = -1 WHERE idx = 1; \
         UPDATE audit_entries SET idx = 1 WHERE idx = 2; \
         UPDATE audit_entries SET idx = 2 WHERE idx = -1;",
    );
    let (ok, report) = verify(&swapped);
    assert!(!ok);
    assert_eq!(report["code"], "audit_entry_misplaced", "{report}");

    // The newest entries and their checkpoint gone together: the log alone
    // cannot tell (see the auditor's test below), but a checkpoint left
    // behind past the end can.
    let cut = copy_of(&server, "cut");
    tamper(
        &cut,
        "DELETE FROM audit_entries WHERE idx >= (SELECT MAX(idx) FROM audit_entries) - 2",
    );
    let (ok, report) = verify(&cut);
    assert!(!ok);
    assert_eq!(report["code"], "audit_truncated", "{report}");

    // The untouched original still verifies.
    assert!(verify(&server.data()).0);
}

#[test]
fn an_edited_entry_fails_the_auditor_that_walks_the_entries() {
    let mut server = server();
    let state = server.dir.path().join("audit-log.json");
    let _alice = server.device("alice");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    succeeded(&audit_log(&server, &state, true, Some(&server.audit_key())));
    let _bob = server.device("bob");
    server.kill9();
    // Before the auditor's next run, an entry it has not walked yet is edited.
    tamper(
        &server.data(),
        "UPDATE audit_entries SET bytes = CAST(replace(CAST(bytes AS TEXT), 'bob', 'eve') AS BLOB) \
         WHERE CAST(bytes AS TEXT) LIKE '%bob%'",
    );
    server.restart();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let before = std::fs::read(&state).unwrap();
    assert_eq!(
        failure(&audit_log(&server, &state, true, None)),
        "audit_root_mismatch"
    );
    // A failed run leaves the last good state.
    assert_eq!(std::fs::read(&state).unwrap(), before);
}

#[test]
fn a_truncated_log_fails_the_auditor_that_saw_it_longer() {
    let mut server = server();
    let state = server.dir.path().join("audit-log.json");
    activity(&server, "alice", "bob");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let seen = succeeded(&audit_log(&server, &state, true, Some(&server.audit_key())));
    let size = seen["to_size"].as_u64().unwrap();
    server.kill9();
    // The intruder cuts the log back to half, with every checkpoint and
    // subtree hash past the cut, so that the server goes on from there.
    let cut = size / 2;
    tamper(
        &server.data(),
        &format!(
            "DELETE FROM audit_entries WHERE idx >= {cut}; \
             DELETE FROM audit_checkpoints WHERE size > {cut}; \
             DELETE FROM audit_nodes WHERE (idx + 1) << level > {cut};"
        ),
    );
    // Offline, a cleanly cut log looks whole...
    assert!(verify(&server.data()).0);
    server.restart();
    std::thread::sleep(std::time::Duration::from_millis(1500));
    // ...but not to the auditor, who saw it longer.
    let code = failure(&audit_log(&server, &state, true, None));
    assert!(
        code == "tlog_shrunk" || code == "tlog_inconsistent",
        "{code}"
    );
}

#[test]
fn a_data_directory_rolled_back_to_a_backup_forks_from_the_auditors_view() {
    let mut server = server();
    let state = server.dir.path().join("audit-log.json");
    let _alice = server.device("alice");
    server.stop();
    let backup = copy_of(&server, "backup");
    server.restart();
    activity(&server, "carol", "dave");
    std::thread::sleep(std::time::Duration::from_millis(1500));
    succeeded(&audit_log(&server, &state, true, Some(&server.audit_key())));
    server.stop();

    // The whole data directory goes back to the copy (keys and all).
    std::fs::remove_dir_all(server.data()).unwrap();
    let status = Command::new("cp")
        .arg("-a")
        .arg(&backup)
        .arg(server.data())
        .status()
        .unwrap();
    assert!(status.success());
    server.restart();
    // It grows again, past where the auditor was, on another history.
    activity(&server, "erin", "frank");
    activity(&server, "gina", "hank");
    std::thread::sleep(std::time::Duration::from_millis(1500));

    // The restored log is internally sound...
    let mut fresh_state = state.clone();
    fresh_state.set_extension("fresh");
    succeeded(&audit_log(
        &server,
        &fresh_state,
        true,
        Some(&server.audit_key()),
    ));
    // ...but not the log the auditor saw.
    let code = failure(&audit_log(&server, &state, true, None));
    assert!(
        code == "tlog_inconsistent" || code == "tlog_shrunk",
        "{code}"
    );
    server.stop();
    assert!(verify(&server.data()).0);
}

#[test]
fn the_auditor_pins_the_audit_key() {
    let server = server();
    let state = server.dir.path().join("audit-log.json");
    // A wrong key on the first run: the checkpoint does not verify.
    let wrong = "11".repeat(32);
    let out = audit_log(&server, &state, true, Some(&wrong));
    assert!(!out.status.success());
    assert!(!state.exists());
    // Trusted on first use, then pinned: another key later is refused.
    succeeded(&audit_log(&server, &state, true, None));
    assert_eq!(
        failure(&audit_log(&server, &state, true, Some(&wrong))),
        "audit_key_changed"
    );
    succeeded(&audit_log(&server, &state, true, Some(&server.audit_key())));
}
