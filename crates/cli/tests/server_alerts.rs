//! Issue 10's server-side rules, against a real server: a burst of wrong
//! logins, a revoked device that tries again, a device out of one-time key
//! packages, a heavy reader, and an auditor who finds the log forked each
//! raise one alert (not one per event) in `valised alerts`, in `--follow`,
//! at the webhook and in `/metrics`; junk reports from anyone do not flood.
// Test helpers below: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::audit::audit_log;
use common::{DOMAIN, Server, addr, free_port, scrape_metrics};
use serde_json::{Value, json};
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// `valised alerts --data D --json [args]`, one object per line.
fn alerts(server: &Server, args: &[&str]) -> Vec<Value> {
    let out = Command::new(common::valised_bin())
        .args(["alerts", "--json", "--data"])
        .arg(server.data())
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// The alerts of `kind`, once there are at least `n` (10 s at most).
fn wait_for(server: &Server, kind: &str, n: usize) -> Vec<Value> {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let found: Vec<Value> = alerts(server, &[])
            .into_iter()
            .filter(|a| a["kind"] == kind)
            .collect();
        if found.len() >= n {
            return found;
        }
        assert!(Instant::now() < deadline, "no {n} {kind} alerts: {found:?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// POSTs JSON to the server with curl, as an outsider (no token):
/// the status and the body.
fn post(server: &Server, path: &str, body: &Value) -> (u16, String) {
    let out = Command::new("curl")
        .args(["-sS", "--http1.1", "-w", "\n%{http_code}", "--cacert"])
        .arg(server.ca())
        .args(["-H", "content-type: application/json", "-d"])
        .arg(body.to_string())
        .arg(format!("{}{path}", server.url))
        .output()
        .expect("curl");
    let text = String::from_utf8(out.stdout).unwrap();
    let (body, status) = text.rsplit_once('\n').unwrap();
    (status.parse().unwrap(), body.to_owned())
}

/// A SIEM's webhook on loopback: each request's JSON body goes to the
/// channel, and is answered 200.
fn webhook() -> (String, mpsc::Receiver<Value>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/valise", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let mut conn = BufReader::new(conn.unwrap());
            let mut length = 0;
            loop {
                let mut line = String::new();
                conn.read_line(&mut line).unwrap();
                let line = line.trim_end().to_ascii_lowercase();
                if line.is_empty() {
                    break;
                }
                if let Some(n) = line.strip_prefix("content-length:") {
                    length = n.trim().parse().unwrap();
                }
            }
            let mut body = vec![0; length];
            conn.read_exact(&mut body).unwrap();
            conn.get_mut()
                .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
                .unwrap();
            if tx.send(serde_json::from_slice(&body).unwrap()).is_err() {
                return;
            }
        }
    });
    (url, rx)
}

#[test]
fn a_burst_of_wrong_logins_is_one_alert_at_every_outlet() {
    let (hook, delivered) = webhook();
    let metrics = free_port();
    let server = Server::start_with(&[
        "--checkpoint-interval-secs",
        "1",
        "--webhook",
        &hook,
        "--metrics-listen",
        &format!("127.0.0.1:{metrics}"),
    ]);
    // The SOC's stream, started before anything happened.
    let mut follow = Command::new(common::valised_bin())
        .args(["alerts", "--follow", "--json", "--data"])
        .arg(server.data())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let (lines_tx, lines) = mpsc::channel();
    let stdout = follow.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            if lines_tx.send(line.unwrap()).is_err() {
                return;
            }
        }
    });

    // Someone guesses at a device of alice's, 25 times from one address.
    let target = json!({"user": addr("alice"), "device": "00".repeat(8)});
    for _ in 0..25 {
        let (status, body) = post(&server, "/v1/auth/challenge", &target);
        assert_eq!(status, 401, "{body}");
    }
    wait_for(&server, "auth_failure_burst", 2);
    // Give the rest of the burst time to be logged: still one alert per
    // subject (the device, the address), not one per failure.
    std::thread::sleep(Duration::from_millis(1500));
    let bursts: Vec<Value> = alerts(&server, &[])
        .into_iter()
        .filter(|a| a["kind"] == "auth_failure_burst")
        .collect();
    assert_eq!(bursts.len(), 2, "{bursts:?}");
    let on_device = bursts
        .iter()
        .find(|a| a["subject"]["device"].is_string())
        .unwrap();
    assert_eq!(
        on_device["subject"]["device"],
        format!("{}/{}", addr("alice"), "00".repeat(8))
    );
    let on_address = bursts
        .iter()
        .find(|a| a["subject"]["address"].is_string())
        .unwrap();
    assert_eq!(on_address["subject"]["address"], "127.0.0.1");
    for a in &bursts {
        assert_eq!(a["severity"], "warning");
        assert_eq!(a["detail"]["failures"], 10, "{a}");
        assert!(a["id"].as_u64().unwrap() > 0 && a["at_ms"].as_i64().unwrap() > 0);
    }

    // --follow printed them as they came.
    let streamed: Vec<Value> = (0..2)
        .map(|_| {
            serde_json::from_str(&lines.recv_timeout(Duration::from_secs(10)).unwrap()).unwrap()
        })
        .collect();
    assert_eq!(streamed, bursts);
    let _ = follow.kill();
    let _ = follow.wait();
    // --since resumes after the last one handled.
    let first = bursts[0]["id"].as_u64().unwrap().to_string();
    assert_eq!(alerts(&server, &["--since", &first]), bursts[1..]);

    // The webhook got each, as the same JSON.
    let mut posted: Vec<Value> = (0..2)
        .map(|_| delivered.recv_timeout(Duration::from_secs(10)).unwrap())
        .collect();
    posted.sort_by_key(|a| a["id"].as_u64());
    assert_eq!(posted, bursts);

    // /metrics counts them, and shows the audit log's size and checkpoint age.
    let text = scrape_metrics(metrics).2;
    assert!(
        text.contains("valise_alerts_total{kind=\"auth_failure_burst\"} 2"),
        "{text}"
    );
    let size: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("valise_audit_tree_size "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(size > 25, "{size}");
    let age: u64 = text
        .lines()
        .find_map(|l| l.strip_prefix("valise_audit_checkpoint_age_seconds "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(age < 60, "{age}");

    // Every alert is an entry of the audit log too.
    let logged: i64 = server
        .db()
        .query_row(
            "SELECT count(*) FROM audit_entries WHERE idx IN (SELECT idx FROM alerts)",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(logged, 2);
}

#[test]
fn a_revoked_device_an_exhausted_device_and_a_heavy_reader_alert() {
    let server = Server::start_with(&[
        "--checkpoint-interval-secs",
        "1",
        "--alert-heavy-reader-floor",
        "5",
    ]);
    let alice = server.device("alice");
    let bob = server.device("bob");

    // Bob's one-time key packages are gone (as if claimed by as many
    // adds): alice's add hands out his last-resort one.
    server
        .db()
        .execute(
            "DELETE FROM key_packages WHERE user = ?1 AND last_resort = 0",
            [addr("bob")],
        )
        .unwrap();
    let conversation = alice.create("Visa list", &["bob"]);
    let exhausted = wait_for(&server, "key_packages_exhausted", 1);
    assert_eq!(exhausted.len(), 1);
    assert_eq!(exhausted[0]["subject"]["user"], addr("bob"));
    assert_eq!(exhausted[0]["detail"]["last_resort"], 1);

    // Bob, who never read before, reads a pile at once.
    for n in 0..6 {
        alice.send_in(&conversation, &format!("Letter {n}"), "Routine.");
    }
    bob.sync();
    let heavy = wait_for(&server, "heavy_reader", 1);
    assert_eq!(heavy[0]["subject"]["device"], bob.address());
    assert!(heavy[0]["detail"]["entries"].as_u64().unwrap() >= 6);

    // Alice's phone is revoked; it tries again.
    let (phone, phone_address) = alice_phone(&server, &alice);
    let refused = phone.run(&["sync", "--json"]);
    assert!(!refused.status.success());
    let revoked = wait_for(&server, "revoked_device_activity", 1);
    assert_eq!(revoked.len(), 1, "{revoked:?}");
    assert_eq!(revoked[0]["subject"]["device"], phone_address);
    assert_eq!(revoked[0]["severity"], "critical");
}

/// Alice's second device, approved by `alice`, then revoked by the
/// administrator; with its address (which it can no longer list).
fn alice_phone(server: &Server, alice: &common::Device) -> (common::Device, String) {
    let phone = server.second_device("alice", alice);
    let address = phone.address();
    let id = address.rsplit('/').next().unwrap().to_owned();
    server.admin(&["revoke", &addr("alice"), &id]);
    (phone, address)
}

#[test]
fn an_auditor_who_finds_a_fork_raises_a_critical_alert_and_junk_does_not_flood() {
    let mut server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let state = server.dir.path().join("audit-log.json");
    let _alice = server.device("alice");
    server.stop();
    let backup = server.dir.path().join("backup");
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(server.data())
            .arg(&backup)
            .status()
            .unwrap()
            .success()
    );
    server.restart();
    let _carol = server.device("carol");
    std::thread::sleep(Duration::from_millis(1500));
    let seen = audit_log(&server, &state, false, Some(&server.audit_key()));
    assert!(seen.status.success());

    // Junk from anyone: 30 reports of checkpoints the server never signed,
    // and one of the log's own (consistent) checkpoint.
    for n in 0..30 {
        let note = format!("{DOMAIN}/valise-audit\n{n}\nAAAA\n\n— fake sig\n");
        let (status, body) = post(
            &server,
            "/v1/audit/reports",
            &json!({"checkpoints": [note], "code": "tlog_inconsistent"}),
        );
        assert_eq!(status, 200, "{body}");
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap()["verified"],
            false
        );
    }
    let saved: Value = serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let (_, body) = post(
        &server,
        "/v1/audit/reports",
        &json!({"checkpoints": [saved["checkpoint"]], "code": "nonsense!"}),
    );
    assert_eq!(
        serde_json::from_str::<Value>(&body).unwrap()["verified"],
        false
    );
    let (status, _) = post(
        &server,
        "/v1/audit/reports",
        &json!({"checkpoints": [], "code": "x"}),
    );
    assert_eq!(status, 400);
    let junk = wait_for(&server, "audit_checkpoint_conflict", 1);
    std::thread::sleep(Duration::from_millis(1500));
    let junk_now: Vec<Value> = alerts(&server, &[])
        .into_iter()
        .filter(|a| a["kind"] == "audit_checkpoint_conflict")
        .collect();
    assert_eq!(junk_now.len(), 1, "one warning for 31 junk reports");
    assert_eq!(junk[0]["severity"], "warning");
    assert_eq!(junk[0]["detail"]["verdict"], "unverified");
    server.stop();

    // The data directory goes back to the copy and grows on another history.
    std::fs::remove_dir_all(server.data()).unwrap();
    assert!(
        Command::new("cp")
            .arg("-a")
            .arg(&backup)
            .arg(server.data())
            .status()
            .unwrap()
            .success()
    );
    server.restart();
    let _erin = server.device("erin");
    let _frank = server.device("frank");
    std::thread::sleep(Duration::from_millis(1500));
    // The auditor fails, and has told the server, which must own up.
    let forked = audit_log(&server, &state, false, None);
    assert!(!forked.status.success());
    let critical = wait_for(&server, "audit_checkpoint_conflict", 1);
    let critical: Vec<&Value> = critical
        .iter()
        .filter(|a| a["severity"] == "critical")
        .collect();
    assert_eq!(critical.len(), 1, "{critical:?}");
    assert_eq!(critical[0]["detail"]["verdict"], "verified");
    assert!(
        ["forked", "rolled_back"].contains(&critical[0]["detail"]["reason"].as_str().unwrap()),
        "{}",
        critical[0]
    );
    assert_eq!(critical[0]["subject"]["address"], "127.0.0.1");
}
