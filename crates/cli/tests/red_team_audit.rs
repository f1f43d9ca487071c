//! Red team of issue 10 (audit log, account alerts, security desk): each
//! test plays an intruder holding the server's process, database and
//! admin account against a real server, and asserts what a device or an
//! auditor must notice.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::audit::{checkpointed, entries, verify};
use common::{Device, Server, addr};
use serde_json::Value;
use std::process::Command;
use std::time::Duration;
use valise_proto::audit::{Action, Entry};

/// How many `admin_action` alerts a device holds.
fn admin_actions(device: &Device) -> usize {
    device
        .alert_kinds()
        .iter()
        .filter(|k| *k == "admin_action")
        .count()
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

/// Finding 2. A device skips, as history from before its enrolment, every
/// entry whose `time_ms` is older than its enrolment — a time the server
/// writes. The intruder invites a device onto alice's account and stamps
/// the entry with an old time (here by editing the queued entry of
/// `valised admin` before the server appends it; a server holding its
/// process just sets its clock). The entry is in the log, signed and
/// proven, shown to alice's device by `GET /v1/audit/account`, and her
/// device dropped it without a word. Now the device starts at the log
/// position its enrolment answer gave (`audit_from`), whatever the times.
#[test]
fn an_admin_action_backdated_by_the_server_still_reaches_the_account() {
    let mut server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    checkpointed();
    assert_eq!(alice.sync()["admin_actions"], 0);

    server.stop();
    server.invite("alice");
    let conn = server.db();
    let (id, bytes): (i64, Vec<u8>) = conn
        .query_row(
            "SELECT id, bytes FROM audit_queue ORDER BY id DESC LIMIT 1",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();
    let mut entry = Entry::decode(&bytes).unwrap();
    assert_eq!(entry.action, Action::InviteIssued);
    // A day before alice enrolled.
    entry.time_ms -= 86_400_000;
    conn.execute(
        "UPDATE audit_queue SET bytes = ?1 WHERE id = ?2",
        rusqlite::params![entry.encode(), id],
    )
    .unwrap();
    drop(conn);
    server.restart();
    checkpointed();

    // The invite is in the log, about alice, by the administrator.
    let logged = entries(&server)
        .into_iter()
        .rfind(|e| e.action == Action::InviteIssued)
        .unwrap();
    assert_eq!(logged.shown_to().unwrap().to_string(), addr("alice"));
    let report = alice.sync();
    assert_eq!(
        report["admin_actions"], 1,
        "alice's device dropped invite entry {} (time_ms {}) as older than her enrolment: {report}",
        logged.index, logged.time_ms
    );
}

/// Finding 3. Devices pinned the desk they learned *first*, at enrolment
/// or after: alice enrolled while the organisation named no desk, and the
/// intruder (holding the admin account) names mallory. Alice's device
/// pinned mallory without a word and reported its alerts to her. A desk
/// named after enrolment must be a `security_desk_changed` like any other
/// change, and not obeyed until alice accepts it.
#[test]
fn a_desk_first_named_after_enrolment_is_alerted_not_obeyed() {
    let server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    let mallory = server.device("mallory");
    checkpointed();
    alice.sync();

    server.admin(&["set", "security-desk", &addr("mallory")]);
    alice.sync();
    // An alert on alice's device (an administrator's invite on her account).
    server.invite("alice");
    checkpointed();
    alice.sync();
    alice.sync();
    mallory.sync();
    let kinds = alice.alert_kinds();
    let leaked: Vec<Value> = mallory
        .desk_reports()
        .into_iter()
        .filter(|r| r["user"] == addr("alice"))
        .collect();
    assert!(
        kinds.contains(&"security_desk_changed".to_owned()),
        "alice's device followed the desk the server named after her enrolment ({kinds:?}); \
         mallory holds her reports: {leaked:?}"
    );
    assert!(leaked.is_empty(), "{leaked:?}");
}

/// Finding 4. `GET /v1/audit/account` pages with `more`; the device asked
/// again while the server said more entries follow, whatever it showed.
/// A server answering "more" with no entry kept the device's sync asking
/// forever: every sync of every device of the account hung (no letters,
/// no other alert). A page that promises more and shows nothing is a lie:
/// `audit_conflict`, and the sync goes on.
#[test]
fn an_endless_audit_page_does_not_hang_the_device() {
    let server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    checkpointed();
    alice.sync();
    server.hook("audit-endless", serde_json::json!({"on": true}));

    let mut sync = alice.spawn_json(&["sync"]);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let status = loop {
        if let Some(status) = sync.try_wait().unwrap() {
            break Some(status);
        }
        if std::time::Instant::now() > deadline {
            sync.kill().unwrap();
            sync.wait().unwrap();
            break None;
        }
        std::thread::sleep(Duration::from_millis(200));
    };
    assert!(
        status.is_some(),
        "alice's sync still asked for the audit log's next page after 30 s"
    );
    assert!(
        alice.alert_kinds().contains(&"audit_conflict".to_owned()),
        "{:?}",
        alice.alert_kinds()
    );
}

/// Finding 5. The audit log's entries were served to anyone who reached
/// the server, with no account (`GET /v1/audit/entries`, for outside
/// auditors). Each names the user and device, the client's IP address,
/// the time and the conversations created: anyone on the network read who
/// works with whom, when and from where. Now a stranger gets leaf hashes
/// only, of salted entries: no entry, and no way to confirm a guessed one.
#[test]
fn the_public_audit_log_does_not_expose_who_did_what_from_where() {
    use base64::Engine as _;
    let server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    let _bob = server.device("bob");
    alice.send_to(&["bob"], "Démarche", "Confidential content.");
    checkpointed();

    // A stranger with the CA and no account at all.
    let get = |path: &str| {
        let out = Command::new("curl")
            .args(["-sS", "--http1.1", "-w", "\n%{http_code}", "--cacert"])
            .arg(server.ca())
            .arg(format!("{}{path}", server.url))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, code) = text.rsplit_once('\n').unwrap();
        (code.to_owned(), body.to_owned())
    };
    let (code, _) = get("/v1/audit/entries?start=0");
    assert_eq!(code, "404", "the entries are not served");
    let (code, body) = get("/v1/audit/leaves?start=0");
    assert_eq!(code, "200", "{body}");
    assert!(!body.contains("alice"), "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    let leaves = page["leaves"].as_array().unwrap();
    assert!(leaves.len() > 5, "{page}");
    // The log itself holds alice's enrolment; its leaf is a salted hash.
    let entries: Vec<Vec<u8>> = server
        .db()
        .prepare("SELECT bytes FROM audit_entries ORDER BY idx")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    let enrolment = entries
        .iter()
        .position(|e| {
            let e = String::from_utf8_lossy(e);
            e.contains("\"enrolment\"") && e.contains(&addr("alice"))
        })
        .expect("alice's enrolment is in the log");
    let served = base64::engine::general_purpose::STANDARD
        .decode(leaves[enrolment].as_str().unwrap())
        .unwrap();
    assert_eq!(served, valise_proto::tlog::leaf_hash(&entries[enrolment]));
    // Without its salt the same entry hashes to another leaf: a guess at
    // who enrolled when, from where, cannot be confirmed.
    let mut guess = valise_proto::audit::Entry::decode(&entries[enrolment]).unwrap();
    guess.salt = valise_proto::audit::Salt([0; 16]);
    assert_ne!(served, valise_proto::tlog::leaf_hash(&guess.encode()));
}
