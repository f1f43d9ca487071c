//! F3: the server's disk fills up while letters flow (the `disk-full` hook
//! of the test-only `adversary` build caps SQLite at its present size, which
//! fails writes exactly as a full disk does). Nothing that was not stored is
//! acknowledged: the sender keeps those letters queued and says so; once
//! there is room again they arrive, every letter exactly once, and the
//! database is intact.

// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::Server;
use serde_json::json;

#[test]
fn a_full_disk_acknowledges_nothing_it_did_not_store() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.create("disk", &["bob"]);
    bob.sync();

    server.hook("disk-full", json!({ "full": true }));
    let body = "x".repeat(4000);
    let (mut accepted, mut queued) = (Vec::new(), Vec::new());
    for n in 0..300 {
        let subject = format!("Letter {n}");
        let args = [
            "send",
            "--conversation",
            &conv,
            "--subject",
            &subject,
            "--body",
            &body,
        ];
        let out = alice.run(&args);
        if out.status.success() {
            accepted.push(subject);
        } else {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(err.contains("storage is full"), "{err}");
            assert!(err.contains("next sync"), "{err}");
            queued.push(subject);
            if queued.len() == 3 {
                break;
            }
        }
    }
    assert_eq!(queued.len(), 3, "the database never filled up");

    // Still full: a sync cannot deliver them either, and loses nothing.
    assert!(!alice.run(&["sync"]).status.success());
    server.hook("disk-full", json!({ "full": false }));
    assert_eq!(alice.sync()["delivered"], 3);
    bob.sync();
    let mut got = bob.subjects();
    let mut sent: Vec<String> = accepted.into_iter().chain(queued).collect();
    got.sort();
    sent.sort();
    assert_eq!(got, sent, "every letter exactly once");

    let check: String = server
        .db()
        .query_row("PRAGMA integrity_check", [], |r| r.get(0))
        .unwrap();
    assert_eq!(check, "ok");
}
