//! The security desk (issue 10): every alert a device raises reaches the
//! desk the organisation named, end to end encrypted and numbered like a
//! letter, so the server can neither read, forge nor drop a report unseen;
//! a server naming another desk is an alert, not obeyed; the desk streams
//! the reports as JSON lines and resumes where it stopped.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Device, Server, addr, files, log};
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::io::{BufRead, BufReader};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// The intruder slips bytes into `victim`'s inbox, in `conv`, as if from
/// `from` (the server must stop for it, see `common::log`): the victim's
/// next sync refuses them and raises `refused_message`.
fn slip_garbage(server: &mut Server, victim: &Device, from: &Device, conv: &str, bytes: &[u8]) {
    server.kill9();
    let db = server.db();
    log::deliver(
        &db,
        log::device_num(&db, &victim.user),
        log::conv_num(&db, conv),
        log::device_num(&db, &from.user),
        log::APPLICATION,
        bytes,
    );
    drop(db);
    server.restart();
}

/// Alice, bob and the desk (soc), named before anyone enrolled; alice and
/// bob share a conversation.
fn organisation() -> (Server, Device, Device, Device, String) {
    let server = Server::start();
    assert_eq!(
        server.admin(&["set", "security-desk", &addr("soc")]),
        format!("security desk: {}", addr("soc"))
    );
    let soc = server.device("soc");
    let alice = server.device("alice");
    let bob = server.device("bob");
    let conv = alice.send_to(&["bob"], "Démarche", "Confidential content.")["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    bob.sync();
    (server, soc, alice, bob, conv)
}

#[test]
fn an_alert_on_alices_device_reaches_the_desk_without_content() {
    let (mut server, soc, alice, bob, conv) = organisation();
    for dev in [&alice, &bob] {
        assert_eq!(dev.json(&["desk"])["pinned"], addr("soc"));
    }
    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 0xde, 0xad]);
    alice.sync();
    let alerts = alice.json(&["alerts"]);
    let alerts = alerts.as_array().unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0]["kind"], "refused_message");
    let evidence = hex::decode(alerts[0]["evidence"].as_str().unwrap()).unwrap();

    assert_eq!(soc.sync()["new_reports"], 1);
    let got = soc.desk_reports();
    assert_eq!(got.len(), 1, "{got:?}");
    let r = &got[0];
    assert_eq!(r["v"], 1);
    assert_eq!(r["user"], addr("alice"));
    assert_eq!(r["device"], alice.device_id());
    assert_eq!(r["kind"], "refused_message");
    assert_eq!(r["conversation"], conv.as_str());
    assert_eq!(r["detail"], alerts[0]["detail"]);
    assert!(r["at_ms"].as_i64().unwrap() > 0);
    assert_eq!(
        r["evidence_sha256"],
        serde_json::json!([hex::encode(Sha256::digest(&evidence))])
    );
    let text = r.to_string();
    for content in ["Démarche", "Confidential", &hex::encode(&evidence)] {
        assert!(!text.contains(content), "{content} in {text}");
    }
    // Reports are not letters: alice's own inbox, soc's inbox and soc's
    // own alerts are as they were.
    assert!(soc.inbox().is_empty());
    assert!(soc.alert_kinds().is_empty());
    assert_eq!(alice.subjects(), Vec::<String>::new());
    // Reported once: the next syncs send nothing more.
    alice.sync();
    soc.sync();
    assert_eq!(soc.desk_reports().len(), 1);
}

/// NO-PLAINTEXT for reports: what a report says travels sealed.
#[test]
fn a_report_is_never_in_the_clear_at_the_server() {
    let (mut server, soc, alice, bob, conv) = organisation();
    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 0xbe, 0xef]);
    alice.sync();
    soc.sync();
    let got = soc.desk_reports();
    assert_eq!(got.len(), 1, "{got:?}");
    let detail = got[0]["detail"].as_str().unwrap().to_owned();
    let digest = got[0]["evidence_sha256"][0].as_str().unwrap().to_owned();
    let places = files(&server.data());
    assert!(places.iter().any(|p| p.ends_with("valised.log")));
    assert!(places.iter().any(|p| p.ends_with("valised.db")));
    for path in &places {
        let bytes = std::fs::read(path).unwrap();
        for secret in [
            detail.as_bytes(),
            b"refused_message".as_slice(),
            &hex::decode(&digest).unwrap(),
            digest.as_bytes(),
        ] {
            assert!(
                !bytes.windows(secret.len()).any(|w| w == secret),
                "{} found in {}",
                String::from_utf8_lossy(secret),
                path.display()
            );
        }
    }
}

/// A7 for reports: the server drops one, the desk sees the gap.
#[test]
fn a_report_the_server_drops_is_seen_missing_by_the_desk() {
    let (mut server, soc, alice, bob, conv) = organisation();
    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 1, 1]);
    alice.sync();
    // The first report's conversation is alice's direct one with the desk.
    let desk_conv = alice
        .json(&["conversation", "list"])
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["id"] != conv.as_str())
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let db = server.db();
    let row = log::newest(&db, log::APPLICATION, &desk_conv, Some(&addr("alice"))).unwrap();
    db.execute("DELETE FROM log WHERE seq = ?1", [row.seq])
        .unwrap();
    drop(db);

    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 2, 2]);
    alice.sync();
    assert_eq!(alice.alert_kinds(), ["refused_message", "refused_message"]);
    soc.sync();
    let got = soc.desk_reports();
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(soc.alert_kinds(), ["letters_withheld"]);
    let alerts = soc.json(&["alerts"]);
    assert_eq!(alerts[0]["conversation"], desk_conv.as_str());
    // The desk does not report to itself.
    assert_eq!(soc.desk_reports().len(), 1);
}

/// The server names another desk: alice's device alerts and keeps
/// reporting to the desk it pinned until she accepts the change.
#[test]
fn a_desk_changed_by_the_server_is_alerted_and_not_obeyed() {
    let (mut server, soc, alice, bob, conv) = organisation();
    let said = server.admin(&["set", "security-desk", &addr("mallory")]);
    assert!(
        said.starts_with(&format!(
            "security desk: {} (was {})",
            addr("mallory"),
            addr("soc")
        )),
        "{said}"
    );
    let mallory = server.device("mallory");
    alice.sync();
    assert_eq!(alice.alert_kinds(), ["security_desk_changed"]);
    let desk = alice.json(&["desk"]);
    assert_eq!(desk["pinned"], addr("soc"));
    assert_eq!(desk["changed"], true);
    assert_eq!(desk["offered"], addr("mallory"));
    // Said once.
    alice.sync();
    assert_eq!(alice.alert_kinds(), ["security_desk_changed"]);

    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 3, 3]);
    alice.sync();
    soc.sync();
    mallory.sync();
    let kinds: Vec<Value> = soc
        .desk_reports()
        .iter()
        .map(|r| r["kind"].clone())
        .collect();
    assert_eq!(kinds, ["security_desk_changed", "refused_message"]);
    assert!(mallory.desk_reports().is_empty());
    assert!(mallory.inbox().is_empty());
    // Mallory enrolled after the change: the desk she pinned is herself,
    // and the desk's own devices report nowhere.
    assert_eq!(mallory.json(&["desk"])["pinned"], addr("mallory"));

    // Accepting moves the reports there.
    assert_eq!(alice.json(&["desk", "accept"])["pinned"], addr("mallory"));
    assert_eq!(alice.json(&["desk"])["changed"], false);
}

/// The desk's SIEM feed: `--follow` streams a new report within seconds;
/// killed and restarted, it prints nothing twice and misses nothing.
#[test]
fn the_desk_follows_and_resumes_where_it_stopped() {
    let (mut server, soc, alice, bob, conv) = organisation();
    let mut follower = Follower::start(&soc);
    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 4, 4]);
    let raised = Instant::now();
    alice.sync();
    let first = follower
        .next(Duration::from_secs(20))
        .expect("no report streamed");
    let elapsed = raised.elapsed();
    eprintln!("alert -> desk --follow: {} ms", elapsed.as_millis());
    assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
    assert_eq!(first["kind"], "refused_message");
    follower.stop();

    // While nobody follows, two more alerts are reported.
    slip_garbage(&mut server, &alice, &bob, &conv, &[0, 1, 0, 2, 5, 5]);
    alice.sync();
    server.admin(&["set", "security-desk", &addr("mallory")]);
    alice.sync();
    let mut follower = Follower::start(&soc);
    // Killed between writing a line and saving its marker, a follower
    // prints that line again (at least once, never missed): the SIEM
    // drops it by `report_id`. Only the line in flight may come again.
    let mut second = follower
        .next(Duration::from_secs(20))
        .expect("missed a report");
    if second["report_id"] == first["report_id"] {
        second = follower
            .next(Duration::from_secs(20))
            .expect("missed a report");
    }
    let third = follower
        .next(Duration::from_secs(20))
        .expect("missed a report");
    assert_eq!(second["kind"], "refused_message");
    assert_eq!(third["kind"], "security_desk_changed");
    assert!(
        follower.next(Duration::from_secs(2)).is_none(),
        "printed twice"
    );
    let ids: Vec<&Value> = [&first, &second, &third]
        .iter()
        .map(|r| &r["report_id"])
        .collect();
    assert!(ids[0] != ids[1] && ids[1] != ids[2] && ids[0] != ids[2]);
    follower.stop();
}

/// `valise --home SOC alerts --desk --follow --json`, read line by line.
struct Follower {
    child: std::process::Child,
    lines: mpsc::Receiver<Value>,
}

impl Follower {
    fn start(desk: &Device) -> Self {
        let mut child = desk.spawn_json(&["alerts", "--desk", "--follow"]);
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if tx.send(serde_json::from_str(&line).unwrap()).is_err() {
                    return;
                }
            }
        });
        Self { child, lines }
    }

    fn next(&mut self, within: Duration) -> Option<Value> {
        self.lines.recv_timeout(within).ok()
    }

    /// Killed, as a SIEM shipper's host may kill it.
    fn stop(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}
