//! imaptest-lite: several mail clients at once issue random commands while
//! alice keeps writing to bob. Every line decodes (support::Imap), every
//! command is answered OK, and each client's view only grows: UIDs are
//! 1..=n without gaps, EXISTS never goes back, and at the end every client
//! sees every letter alice sent.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::Server;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use support::{Bridge, Imap};

const CLIENTS: usize = 5;
const LETTERS: usize = 6;

/// The UIDs a `UID SEARCH ALL` answer lists.
fn uids(answer: &[String]) -> Vec<u32> {
    answer[0]
        .trim_end()
        .strip_prefix("* SEARCH")
        .unwrap()
        .split_whitespace()
        .map(|u| u.parse().unwrap())
        .collect()
}

/// One client's random session until `stop`; returns how many commands it sent.
fn client(
    bridge_imap: String,
    user: String,
    password: String,
    seed: u64,
    stop: Arc<AtomicBool>,
) -> Result<usize, String> {
    let mut imap = Imap::connect(&bridge_imap);
    imap.ok(&format!("LOGIN {user} {password}"));
    imap.ok("SELECT INBOX");
    let mut rng = seed;
    let mut next = || {
        // xorshift: reproducible per client.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut seen: Vec<u32> = Vec::new();
    let mut commands = 0;
    while !stop.load(Ordering::Relaxed) {
        let command = match next() % 8 {
            0 => "NOOP".to_owned(),
            1 => "UID FETCH 1:* (UID FLAGS ENVELOPE)".to_owned(),
            2 => "UID FETCH 1:* (BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)".to_owned(),
            3 => format!(
                "UID STORE 1:* {}FLAGS.SILENT (\\Flagged)",
                ["+", "-"][(next() % 2) as usize]
            ),
            4 => "STATUS Sent (MESSAGES UIDNEXT)".to_owned(),
            5 => "LIST \"\" \"*\"".to_owned(),
            6 => "SELECT INBOX".to_owned(),
            _ => "UID SEARCH ALL".to_owned(),
        };
        let answer = imap.ok(&command);
        commands += 1;
        if command == "UID SEARCH ALL" {
            let now = uids(&answer);
            let expected: Vec<u32> = (1..=now.len() as u32).collect();
            assert_eq!(now, expected, "UIDs with gaps");
            assert!(
                now.len() >= seen.len(),
                "letters went missing: {seen:?} then {now:?}"
            );
            seen = now;
        }
    }
    // Wait for everything alice sent (NOOP tells of new letters).
    let start = Instant::now();
    loop {
        imap.ok("NOOP");
        let all = uids(&imap.ok("UID SEARCH ALL"));
        if all.len() == LETTERS {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!("only {all:?}"));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    imap.cmd("LOGOUT");
    Ok(commands)
}

#[test]
fn many_clients_at_once_while_letters_arrive() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "First", "Before the clients.");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..CLIENTS)
        .map(|i| {
            let (addr, user, password, stop) = (
                bridge.imap.clone(),
                bob.user.clone(),
                password.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || client(addr, user, password, 0x9e37_79b9 + i as u64, stop))
        })
        .collect();
    for i in 1..LETTERS {
        alice.send_to(&["bob"], &format!("Letter {i}"), "While clients read.");
    }
    stop.store(true, Ordering::Relaxed);
    let mut commands = 0;
    for c in clients {
        match c.join().unwrap() {
            Ok(n) => commands += n,
            Err(e) => {
                let log = bridge.log_text();
                let tail: Vec<&str> = log
                    .lines()
                    .filter(|l| l.contains("WARN") || l.contains("ERROR"))
                    .collect();
                panic!("{e}; bridge warnings:\n{}", tail.join("\n"));
            }
        }
    }
    assert!(
        commands > 50,
        "only {commands} commands: the clients barely ran"
    );
}
