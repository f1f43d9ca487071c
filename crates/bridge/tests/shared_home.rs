//! `valise` commands on the home the bridge serves, while it serves it
//! (issue 12): the bridge holds the home only per step, so both work at
//! once. Alice's bridge keeps an IDLE session open and takes letters by
//! SMTP while `valise send`, `sync`, `inbox` and `read` run in a loop on
//! the same home and bob writes in. Every letter arrives exactly once on
//! every side; bob opens every letter alice sealed from either process (a
//! ratchet generation used twice would show as a letter he cannot open, a
//! rejected entry); IDLE shows the letters `valise` fetched; `valise sync
//! --wait` does not keep the bridge waiting while it waits; and a
//! `kill -9` of the bridge in the middle of a submission leaves the home
//! usable by `valise`.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use base64::Engine as _;
use common::{Device, Server};
use serde_json::Value;
use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::Child;
use std::time::{Duration, Instant};
use support::{Bridge, Imap};

/// Rounds of `valise send`, `sync`, `inbox`, `read` beside the bridge.
const ROUNDS: usize = 4;
/// Letters bob writes in meanwhile.
const FROM_BOB: usize = 4;
/// Letters alice's mail client sends through the bridge meanwhile.
const BY_SMTP: usize = 4;

/// A logged-in SMTP submission session.
struct Smtp {
    reader: BufReader<TcpStream>,
    writer: TcpStream,
    from: String,
}

impl Smtp {
    fn login(addr: &str, user: &str, password: &str) -> Self {
        let stream = TcpStream::connect(addr).unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut s = Self {
            writer: stream.try_clone().unwrap(),
            reader: BufReader::new(stream),
            from: user.to_owned(),
        };
        assert!(s.reply().starts_with("220 "));
        let plain =
            base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{password}"));
        s.send(&format!("EHLO client.example\r\nAUTH PLAIN {plain}\r\n"));
        assert!(s.reply().starts_with("250"));
        assert!(s.reply().starts_with("235 "));
        s
    }

    fn reply(&mut self) -> String {
        let mut all = String::new();
        loop {
            let mut line = String::new();
            self.reader.read_line(&mut line).unwrap();
            assert!(line.ends_with("\r\n"), "{line:?}");
            all.push_str(&line);
            if line.as_bytes().get(3) == Some(&b' ') {
                return all;
            }
        }
    }

    fn send(&mut self, text: &str) {
        self.writer.write_all(text.as_bytes()).unwrap();
    }

    /// Submits a letter up to its final dot; the caller reads the answer.
    fn submit(&mut self, to: &str, subject: &str) {
        let from = self.from.clone();
        self.send(&format!("MAIL FROM:<{from}>\r\nRCPT TO:<{to}>\r\nDATA\r\n"));
        for _ in 0..2 {
            assert!(self.reply().starts_with("250 "));
        }
        assert!(self.reply().starts_with("354 "));
        self.send(&format!(
            "From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nThrough the bridge.\r\n.\r\n"
        ));
    }
}

/// Whether another process holds the home's lock right now.
fn held(home: &Path) -> bool {
    let lock = std::fs::File::open(home.join("lock")).unwrap();
    match lock.try_lock() {
        Ok(()) => false,
        Err(std::fs::TryLockError::WouldBlock) => true,
        Err(e) => panic!("{e}"),
    }
}

/// Freezes the bridge (SIGSTOP) between two of its steps, while it does
/// not hold the home.
fn freeze_between_steps(bridge: &Bridge, home: &Path) {
    let start = Instant::now();
    loop {
        bridge.signal("STOP");
        if !held(home) {
            return;
        }
        bridge.signal("CONT");
        assert!(start.elapsed() < Duration::from_secs(60), "never released");
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The child's JSON answer, or a failure if it does not finish in time (a
/// command that waits for the home while the bridge runs never does).
fn finished(mut child: Child, what: &str) -> Value {
    let start = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("`valise {what}` never ran beside the bridge");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", common::stderr(&out));
    serde_json::from_slice(&out.stdout).unwrap()
}

/// How many times each subject `device` received from `from`.
fn received(device: &Device, from: &str) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for letter in device.inbox() {
        if letter["from"] == from {
            *counts
                .entry(letter["subject"].as_str().unwrap().to_owned())
                .or_default() += 1;
        }
    }
    counts
}

fn once_each(subjects: impl IntoIterator<Item = String>) -> BTreeMap<String, usize> {
    subjects.into_iter().map(|s| (s, 1)).collect()
}

/// Reads IDLE's pushes until the folder holds `n` letters; the count
/// never goes back, and no letter is expunged.
fn idle_until(imap: &mut Imap, n: usize) {
    let mut exists = 0;
    while exists < n {
        let line = imap.response();
        assert!(!line.contains("EXPUNGE"), "{line}");
        if let Some(count) = line
            .strip_prefix("* ")
            .and_then(|l| l.strip_suffix(" EXISTS\r\n"))
        {
            let count: usize = count.parse().unwrap();
            assert!(count >= exists, "EXISTS went back: {exists} then {count}");
            exists = count;
        }
    }
    assert_eq!(exists, n, "more letters than were sent");
}

#[test]
fn valise_commands_work_on_the_home_the_bridge_serves() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let alice_addr = alice.user.clone();
    alice.send_to(&["bob"], "Hello", "Before the bridge.");
    bob.sync(); // bob writes in this conversation: one entry per letter.
    let password = support::init(&alice);
    let bridge = Bridge::start(&alice, false);
    let mut idle = bridge.login(&password);
    idle.ok("SELECT INBOX");
    idle.send("idle1 IDLE");
    assert!(idle.response().starts_with("+ "));

    // A letter only `valise sync` can have fetched: the bridge is frozen
    // (not holding the home) until the command is done.
    freeze_between_steps(&bridge, &alice.home);
    bob.send_to(&["alice"], "Fetched by valise", "Not by the bridge.");
    let report = finished(alice.spawn_json(&["sync"]), "sync");
    bridge.signal("CONT");
    assert_eq!(report["new_letters"], 1, "{report}");
    idle_until(&mut idle, 1);

    // A command waiting for news waits with the home released: the bridge
    // answers a mail client meanwhile.
    let waiting = alice.spawn_json(&["sync", "--wait", "25"]);
    std::thread::sleep(Duration::from_secs(3)); // it waits for news
    let asked = Instant::now();
    let mut other = bridge.login(&password);
    other.ok("SELECT INBOX");
    let answered = asked.elapsed();
    assert!(answered < Duration::from_secs(5), "{answered:?}");
    bob.send_to(&["alice"], "While valise waits", "Whoever fetches it.");
    let report = finished(waiting, "sync --wait");
    assert_eq!(report["rejected"], 0, "{report}");
    idle_until(&mut idle, 2);

    // Everything at once.
    std::thread::scope(|s| {
        s.spawn(|| {
            for j in 0..FROM_BOB {
                bob.send_to(&["alice"], &format!("bob {j}"), "Written in.");
            }
        });
        s.spawn(|| {
            let mut smtp = Smtp::login(&bridge.smtp, &alice_addr, &password);
            for k in 0..BY_SMTP {
                smtp.submit(&bob.user, &format!("smtp {k}"));
                let sent = smtp.reply();
                assert!(sent.starts_with("250 2.0.0 sent <"), "{sent}");
            }
        });
        s.spawn(|| {
            for i in 0..ROUNDS {
                let sent = finished(
                    alice.spawn_json(&[
                        "send",
                        "--to",
                        &bob.user,
                        "--subject",
                        &format!("valise {i}"),
                        "--body",
                        "Beside the bridge.",
                    ]),
                    "send",
                );
                assert!(sent["id"].is_i64(), "{sent}");
                let synced = finished(alice.spawn_json(&["sync"]), "sync");
                assert_eq!(synced["rejected"], 0, "{synced}");
                let inbox = finished(alice.spawn_json(&["inbox"]), "inbox");
                let newest = inbox.as_array().unwrap().last().unwrap()["id"]
                    .as_i64()
                    .unwrap();
                let read = finished(alice.spawn_json(&["read", &newest.to_string()]), "read");
                assert_eq!(read["id"], newest);
            }
        });
    });

    // IDLE saw every letter in, whoever fetched it; and each once.
    idle_until(&mut idle, 2 + FROM_BOB);
    idle.send("DONE");
    assert_eq!(idle.response(), "idle1 OK IDLE terminated\r\n");
    let all: Vec<u32> = (1..=(2 + FROM_BOB) as u32).collect();
    let search = idle.ok("UID SEARCH ALL");
    let uids: Vec<u32> = search[0]
        .trim_end()
        .strip_prefix("* SEARCH")
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect();
    assert_eq!(uids, all);

    // Alice (through `valise`, the bridge still running) has each of
    // bob's letters once, and nothing to alert.
    let synced = alice.sync();
    assert_eq!(synced["rejected"], 0, "{synced}");
    let mut from_bob = once_each((0..FROM_BOB).map(|j| format!("bob {j}")));
    from_bob.insert("Fetched by valise".into(), 1);
    from_bob.insert("While valise waits".into(), 1);
    assert_eq!(received(&alice, &bob.user), from_bob);
    assert_eq!(alice.alert_kinds(), Vec::<String>::new());

    // Bob opened every letter alice sealed, from either process, once.
    let synced = bob.sync();
    assert_eq!(
        synced["rejected"], 0,
        "a letter bob could not open: {synced}"
    );
    let mut from_alice = once_each(
        (0..ROUNDS)
            .map(|i| format!("valise {i}"))
            .chain((0..BY_SMTP).map(|k| format!("smtp {k}"))),
    );
    from_alice.insert("Hello".into(), 1);
    assert_eq!(received(&bob, &alice_addr), from_alice);
    assert_eq!(bob.alert_kinds(), Vec::<String>::new());

    // A new bridge password, made while the bridge runs, works at once.
    let password = support::password_of(&support::run(&alice, &["password", "--reset"]));
    bridge.login(&password).ok("LOGOUT");

    // kill -9 while the bridge seals and submits a letter.
    let mut smtp = Smtp::login(&bridge.smtp, &alice_addr, &password);
    smtp.submit(&bob.user, "Cut short");
    std::thread::sleep(Duration::from_millis(5));
    bridge.stop(); // SIGKILL: no destructor runs, as in a crash.
    let synced = finished(alice.spawn_json(&["sync"]), "sync after kill -9");
    assert_eq!(synced["rejected"], 0, "{synced}");
    alice.send_to(&["bob"], "After the kill", "The home still works.");
    assert_eq!(bob.sync()["rejected"], 0);
    let after = received(&bob, &alice_addr);
    assert_eq!(after.get("After the kill"), Some(&1), "{after:?}");
    assert!(after.get("Cut short").is_none_or(|n| *n == 1), "{after:?}");
    assert_eq!(bob.alert_kinds(), Vec::<String>::new());
    // And the bridge starts again on it, with the same letters.
    let bridge = Bridge::start(&alice, false);
    let mut imap = bridge.login(&password);
    let selected = imap.ok("SELECT INBOX");
    let want = format!("* {} EXISTS\r\n", 2 + FROM_BOB);
    assert!(selected.contains(&want), "{selected:?}");
}

/// Red team: a download holds the home only to write each part (the
/// bridge's first FETCH of an attachment). A `valise sync` that ran
/// between two parts fetched a letter; the bridge took the home back
/// inside the download and read its groups afresh, but never told its
/// sessions, and IDLE did not show the letter (the bridge's own sync,
/// waiting for the FETCH's step, found nothing new after it).
#[test]
fn idle_shows_a_letter_valise_fetched_while_the_bridge_downloaded() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let file = server.dir.path().join("annex.bin");
    // Long enough to download (seconds) for bob to write and valise to
    // sync meanwhile.
    let bytes: Vec<u8> = (0..24_000_000u32).map(|i| (i ^ (i >> 9)) as u8).collect();
    std::fs::write(&file, bytes).unwrap();
    let annex = file.to_str().unwrap();
    let args = [
        "send",
        "--to",
        &alice.user,
        "--subject",
        "Annex",
        "--body",
        "See it.",
    ];
    bob.json(&[&args[..], &["--attach", annex]].concat());
    alice.sync();
    let password = support::init(&alice);
    let bridge = Bridge::start_with(&alice, false, &["--stream-over", "100000000"]);
    let mut idle = bridge.login(&password);
    idle.ok("SELECT INBOX");
    idle.send("idle1 IDLE");
    assert!(idle.response().starts_with("+ "));
    let mut fetcher = bridge.login(&password);
    fetcher.ok("EXAMINE INBOX");

    // The FETCH's step keeps the bridge's own sync waiting; `valise sync`
    // takes the home between two parts and fetches bob's letter.
    fetcher.send("f1 UID FETCH 1 BODY.PEEK[2]");
    std::thread::sleep(Duration::from_millis(300));
    bob.send_to(&["alice"], "News", "Fetched by valise.");
    let report = finished(alice.spawn_json(&["sync"]), "sync");
    let answer = fetcher.until("f1 ");
    assert!(answer.last().unwrap().starts_with("f1 OK"), "{answer:#?}");
    assert_eq!(report["new_letters"], 1, "the bridge fetched it: {report}");
    idle_until(&mut idle, 2);
}
