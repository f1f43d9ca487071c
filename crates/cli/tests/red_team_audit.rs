//! Red team of issue 10 (audit log, account alerts, security desk): each
//! test plays an intruder holding the server's process, database and
//! admin account against a real server, and asserts what a device or an
//! auditor must notice.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Device, Server, addr};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;
use valise_proto::audit::{Action, Entry};

/// Waits past the next checkpoint (signed every second here).
fn checkpointed() {
    std::thread::sleep(Duration::from_millis(1500));
}

/// `valised audit verify --data D --json`: passed?
fn verify(data: &Path) -> (bool, Value) {
    let out = Command::new(common::valised_bin())
        .args(["audit", "verify", "--json", "--data"])
        .arg(data)
        .output()
        .unwrap();
    let v: Value = serde_json::from_slice(&out.stdout)
        .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
    (out.status.success(), v)
}

/// How many `admin_action` alerts a device holds.
fn admin_actions(device: &Device) -> usize {
    device
        .alert_kinds()
        .iter()
        .filter(|k| *k == "admin_action")
        .count()
}

/// Every entry of the log, decoded, as stored.
fn entries(server: &Server) -> Vec<Entry> {
    let conn = server.db();
    let mut stmt = conn
        .prepare("SELECT bytes FROM audit_entries ORDER BY idx")
        .unwrap();
    stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
        .unwrap()
        .map(|b| Entry::decode(&b.unwrap()).unwrap())
        .collect()
}

/// Finding 1. The intruder invites a device onto alice's account, then
/// deletes the invite's row from `audit_account` (the index that
/// `GET /v1/audit/account` reads). The entry stays in the log, so the tree
/// and every checkpoint still verify, but alice's devices are never shown
/// it. `valised audit verify` must see that the index no longer lists an
/// entry the log says the account must be shown.
#[test]
fn an_admin_action_dropped_from_the_account_index_fails_audit_verify() {
    let mut server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    checkpointed();
    assert_eq!(alice.sync()["admin_actions"], 0);

    server.invite("alice");
    checkpointed();
    server.stop();
    let invite = entries(&server)
        .into_iter()
        .rfind(|e| e.action == Action::InviteIssued)
        .unwrap();
    let conn = server.db();
    let gone = conn
        .execute(
            "DELETE FROM audit_account WHERE user = ?1 AND idx = ?2",
            rusqlite::params![addr("alice"), invite.index as i64],
        )
        .unwrap();
    assert_eq!(gone, 1);
    drop(conn);

    // The attack works on the device: nothing to show.
    server.restart();
    checkpointed();
    assert_eq!(alice.sync()["admin_actions"], 0);
    assert_eq!(admin_actions(&alice), 0);

    // The offline verifier must not call this log sound.
    server.stop();
    let (ok, v) = verify(&server.data());
    assert!(
        !ok,
        "audit verify passed a log whose account index hides entry {}: {v}",
        invite.index
    );
    assert_eq!(v["code"], "audit_account_index", "{v}");
}
