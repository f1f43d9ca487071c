//! imaptest-lite: several mail clients at once issue random IMAP commands
//! while alice keeps writing to bob (through her own bridge's SMTP, at a
//! steady rate). Dovecot's imaptest is not packaged in Debian; this is its
//! idea at our scale. Each client keeps a model of the INBOX and checks
//! every answer against it:
//! - every line decodes with imap-codec (support::Imap) and every command
//!   is answered OK: 0 protocol errors;
//! - EXISTS never goes back and no EXPUNGE comes (nobody expunges); a
//!   search or fetch of `1:*` lists exactly the letters EXISTS announced;
//! - UIDs are 1..=n without gaps, and only grow;
//! - flags are as stored: each client flags and unflags its own letters
//!   (UID mod clients), and every FETCH FLAGS shows them as it left them;
//! - at the end every client sees every letter alice sent.
//!
//! In CI: [`CI`] (4 clients x 10 s). The figure in docs/BENCHMARKS.md is
//! the ignored [`full`] run (10 clients x 60 s at 5 letters/s), on release
//! builds.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::Server;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use support::{Bridge, Imap, Smtp};

/// How hard a run pushes.
struct Load {
    clients: usize,
    seconds: u64,
    letters_per_second: f64,
}

/// Short enough for every CI run.
const CI: Load = Load {
    clients: 4,
    seconds: 10,
    letters_per_second: 2.0,
};

/// One client's model of the selected INBOX.
#[derive(Default)]
struct Model {
    /// The last EXISTS the bridge announced.
    exists: usize,
    /// UIDs as last listed (1..=n).
    uids: usize,
    /// \Flagged as this client last set it, for the letters it owns.
    flagged: BTreeMap<u32, bool>,
}

impl Model {
    /// Takes in the untagged EXISTS and EXPUNGE of an answer.
    fn untagged(&mut self, answer: &[String]) -> Result<(), String> {
        for r in answer {
            let words: Vec<&str> = r.split_whitespace().collect();
            match words.as_slice() {
                ["*", n, "EXISTS"] => {
                    let n: usize = n.parse().unwrap();
                    if n < self.exists {
                        return Err(format!("EXISTS went back: {} then {n}", self.exists));
                    }
                    self.exists = n;
                }
                ["*", _, "EXPUNGE"] => return Err(format!("nobody expunged, yet {r}")),
                _ => {}
            }
        }
        Ok(())
    }

    /// Checks a `UID SEARCH ALL` answer: UIDs 1..=EXISTS, growing.
    fn search(&mut self, answer: &[String]) -> Result<(), String> {
        let line = answer
            .iter()
            .find(|r| r.starts_with("* SEARCH"))
            .ok_or("no SEARCH answer")?;
        let uids: Vec<u32> = line
            .trim_end()
            .strip_prefix("* SEARCH")
            .unwrap()
            .split_whitespace()
            .map(|u| u.parse().unwrap())
            .collect();
        let expected: Vec<u32> = (1..=self.exists as u32).collect();
        if uids != expected {
            return Err(format!("EXISTS {}, UIDs {uids:?}", self.exists));
        }
        if uids.len() < self.uids {
            return Err(format!("UIDs went back: {} then {uids:?}", self.uids));
        }
        self.uids = uids.len();
        Ok(())
    }

    /// Checks a `UID FETCH 1:* (... FLAGS ...)` answer: one per letter,
    /// and this client's letters flagged as it left them.
    fn flags(&self, answer: &[String]) -> Result<(), String> {
        // By UID: another session's change may come as one more FETCH.
        let mut letters = BTreeMap::new();
        for r in answer.iter().filter(|r| r.contains(" FETCH (")) {
            let uid: u32 = r
                .split("UID ")
                .nth(1)
                .and_then(|s| s.split([' ', ')']).next())
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| format!("no UID in {r}"))?;
            let flags = r
                .split("FLAGS (")
                .nth(1)
                .and_then(|s| s.split(')').next())
                .ok_or_else(|| format!("no FLAGS in {r}"))?;
            letters.insert(uid, flags.contains("\\Flagged"));
        }
        if letters.len() != self.exists {
            return Err(format!(
                "EXISTS {}, FETCH of {:?}",
                self.exists,
                letters.keys()
            ));
        }
        for (uid, want) in &self.flagged {
            if letters.get(uid) != Some(want) {
                return Err(format!("UID {uid} should be flagged: {want}; {answer:?}"));
            }
        }
        Ok(())
    }
}

/// One client's random session until `stop`; how many commands it sent.
fn client(
    bridge_imap: String,
    user: String,
    password: String,
    (me, clients): (u64, u64),
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicUsize>,
) -> Result<usize, String> {
    let mut imap = Imap::connect(&bridge_imap);
    imap.ok(&format!("LOGIN {user} {password}"));
    let mut model = Model::default();
    model.untagged(&imap.ok("SELECT INBOX"))?;
    let mut rng = 0x9e37_79b9 + me;
    let mut next = || {
        // xorshift: reproducible per client.
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        rng
    };
    let mut commands = 0;
    while !stop.load(Ordering::Relaxed) {
        let roll = next();
        // A letter this client owns (UID mod clients), if it has seen one.
        let mine: Vec<u32> = (1..=model.uids as u32)
            .filter(|u| u64::from(*u) % clients == me)
            .collect();
        let command = match roll % 9 {
            0 => "NOOP".to_owned(),
            1 => "UID FETCH 1:* (UID FLAGS ENVELOPE)".to_owned(),
            2 => "UID FETCH 1:* (UID FLAGS BODY.PEEK[HEADER.FIELDS (SUBJECT)] RFC822.SIZE)"
                .to_owned(),
            3 | 4 if !mine.is_empty() => {
                let uid = mine[(next() % mine.len() as u64) as usize];
                let on = next() % 2 == 0;
                model.flagged.insert(uid, on);
                let sign = if on { "+" } else { "-" };
                format!("UID STORE {uid} {sign}FLAGS.SILENT (\\Flagged)")
            }
            5 => "STATUS Sent (MESSAGES UIDNEXT)".to_owned(),
            6 => "LIST \"\" \"*\"".to_owned(),
            7 => "SELECT INBOX".to_owned(),
            _ => "UID SEARCH ALL".to_owned(),
        };
        let answer = imap.cmd(&command);
        commands += 1;
        let last = answer.last().unwrap();
        if last.split(' ').nth(1) != Some("OK") {
            return Err(format!("{command}: {answer:?}"));
        }
        if command == "SELECT INBOX" {
            // A new selection announces the folder afresh.
            model.exists = 0;
        }
        model.untagged(&answer)?;
        if command == "UID SEARCH ALL" {
            model.search(&answer)?;
        } else if command.starts_with("UID FETCH") {
            model.flags(&answer)?;
        }
    }
    // Wait for everything alice sent (NOOP tells of new letters).
    let start = Instant::now();
    let before = model.exists;
    loop {
        model.untagged(&imap.ok("NOOP"))?;
        model.search(&imap.ok("UID SEARCH ALL"))?;
        model.flags(&imap.ok("UID FETCH 1:* (UID FLAGS)"))?;
        if model.exists == sent.load(Ordering::Relaxed) {
            break;
        }
        if start.elapsed() > Duration::from_secs(60) {
            return Err(format!(
                "{} of {} letters ({before} at the stop)",
                model.exists,
                sent.load(Ordering::Relaxed)
            ));
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    imap.cmd("LOGOUT");
    Ok(commands)
}

fn imaptest(load: &Load) {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "First", "Before the clients.");
    let sent = Arc::new(AtomicUsize::new(1));
    let alice_password = support::init(&alice);
    let alice_bridge = Bridge::start(&alice, false);
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let stop = Arc::new(AtomicBool::new(false));
    let clients: Vec<_> = (0..load.clients)
        .map(|i| {
            let (addr, user, password, stop, sent) = (
                bridge.imap.clone(),
                bob.user.clone(),
                password.clone(),
                stop.clone(),
                sent.clone(),
            );
            let who = (i as u64, load.clients as u64);
            std::thread::spawn(move || client(addr, user, password, who, stop, sent))
        })
        .collect();
    // Alice writes at a steady rate for the run's length.
    let mut smtp = Smtp::login(&alice_bridge, &alice_password);
    let start = Instant::now();
    let every = Duration::from_secs_f64(1.0 / load.letters_per_second);
    let run = Duration::from_secs(load.seconds);
    let mut n = 0u32;
    while start.elapsed() < run {
        n += 1;
        smtp.send_letter(
            &alice.user,
            &bob.user,
            &format!("Letter {n}"),
            "While clients read.",
        );
        sent.fetch_add(1, Ordering::Relaxed);
        let due = every * n;
        if let Some(wait) = due.checked_sub(start.elapsed()) {
            std::thread::sleep(wait);
        }
    }
    stop.store(true, Ordering::Relaxed);
    let mut commands = 0;
    let mut errors = Vec::new();
    for c in clients {
        match c.join() {
            Ok(Ok(n)) => commands += n,
            Ok(Err(e)) => errors.push(e),
            // support::Imap panics on a line that does not decode.
            Err(_) => errors.push("a client panicked (see above)".to_owned()),
        }
    }
    let summary = format!(
        "imaptest-lite: {} clients x {} s, {} letters sent, {commands} commands, {} errors",
        load.clients,
        load.seconds,
        sent.load(Ordering::Relaxed),
        errors.len()
    );
    println!("{summary}");
    if !errors.is_empty() {
        let log = bridge.log_text();
        let tail: Vec<&str> = log
            .lines()
            .filter(|l| l.contains("WARN") || l.contains("ERROR"))
            .collect();
        panic!(
            "{summary}:\n{}\nbridge warnings:\n{}",
            errors.join("\n"),
            tail.join("\n")
        );
    }
    assert!(
        commands > 20 * load.clients,
        "only {commands} commands: the clients barely ran"
    );
}

#[test]
fn many_clients_at_once_while_letters_arrive() {
    imaptest(&CI);
}

/// The figure's run (docs/BENCHMARKS.md): `cargo test --release -p
/// valise-bridge --test concurrent_clients -- --ignored --nocapture`
/// after `cargo build --release --workspace --bins`.
#[test]
#[ignore]
fn full() {
    imaptest(&Load {
        clients: 10,
        seconds: 60,
        letters_per_second: 5.0,
    });
}
