//! Differential: the bridge against Debian's dovecot-imapd serving the very
//! same mails. The bridge renders bob's letters; the test writes its bytes
//! into a Maildir and starts a throwaway dovecot on a loopback port (its own
//! config, no system service); then the same FETCH items (ENVELOPE,
//! BODYSTRUCTURE, HEADER.FIELDS, sections, size) and UID SEARCH criteria go
//! to both. Mails are matched by Message-ID (UIDs differ), and
//! UIDVALIDITY and INTERNALDATE are never compared. A difference is a
//! bridge bug, unless a comment here says why dovecot may differ.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::Server;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};
use support::{Bridge, Imap, tool};

/// What both servers are asked for each mail. RFC822.SIZE, sections and a
/// partial fetch compare bytes; ENVELOPE and BODYSTRUCTURE are parsed.
const ITEMS: &str = "(UID RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY \
    BODY.PEEK[HEADER.FIELDS (FROM TO CC SUBJECT DATE MESSAGE-ID IN-REPLY-TO REFERENCES)] \
    BODY.PEEK[HEADER.FIELDS.NOT (X-VALISE-THREAD)] BODY.PEEK[TEXT] BODY.PEEK[1] \
    BODY.PEEK[1.MIME] BODY.PEEK[2] BODY.PEEK[2.MIME] BODY.PEEK[]<10.40>)";

/// A throwaway dovecot: its own config, Maildir and loopback port; stopped
/// on drop.
struct Dovecot {
    child: Child,
    addr: String,
    _dir: tempfile::TempDir,
}

impl Dovecot {
    /// Serves `mails` (in order) as the INBOX of user `u`, password `pw`.
    fn serve(mails: &[Vec<u8>]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        let maildir = root.join("Maildir");
        for sub in ["cur", "new", "tmp"] {
            std::fs::create_dir_all(maildir.join(sub)).unwrap();
        }
        for (i, mail) in mails.iter().enumerate() {
            let name = format!("{}.M{i}.valise:2,", 1_700_000_000 + i);
            std::fs::write(maildir.join("cur").join(name), mail).unwrap();
        }
        let port = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap().port()
        };
        // Dovecot never serves mail as root: as root, the mails go to nobody.
        let uid = Command::new("id").arg("-u").output().unwrap().stdout;
        let uid: u32 = String::from_utf8(uid).unwrap().trim().parse().unwrap();
        let (uid, gid) = if uid == 0 {
            (65534, 65534)
        } else {
            let gid = Command::new("id").arg("-g").output().unwrap().stdout;
            (uid, String::from_utf8(gid).unwrap().trim().parse().unwrap())
        };
        let r = root.display();
        let config = format!(
            "base_dir = {r}/run\nstate_dir = {r}/state\nlog_path = {r}/dovecot.log\n\
             protocols = imap\nlisten = 127.0.0.1\nssl = no\n\
             disable_plaintext_auth = no\nauth_mechanisms = plain\n\
             mail_location = maildir:{r}/Maildir:LAYOUT=fs:INBOX={r}/Maildir\n\
             passdb {{\n  driver = static\n  args = password=pw\n}}\n\
             userdb {{\n  driver = static\n  args = uid={uid} gid={gid} home={r}/home\n}}\n\
             service imap-login {{\n  chroot =\n  inet_listener imap {{\n    \
             address = 127.0.0.1\n    port = {port}\n  }}\n  \
             inet_listener imaps {{\n    port = 0\n  }}\n}}\n\
             service anvil {{\n  chroot =\n}}\n"
        );
        std::fs::write(root.join("dovecot.conf"), config).unwrap();
        if uid == 65534 {
            chown_all(root, uid, gid);
        }
        let child = tool("dovecot")
            .arg("-c")
            .arg(root.join("dovecot.conf"))
            .arg("-F")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let addr = format!("127.0.0.1:{port}");
        let start = Instant::now();
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "dovecot does not listen: {}",
                std::fs::read_to_string(root.join("dovecot.log")).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
        Self {
            child,
            addr,
            _dir: dir,
        }
    }
}

impl Drop for Dovecot {
    fn drop(&mut self) {
        // SIGTERM: the master stops its login and imap processes too.
        let _ = Command::new("kill")
            .args(["-TERM", &self.child.id().to_string()])
            .status();
        let _ = self.child.wait();
    }
}

fn chown_all(path: &Path, uid: u32, gid: u32) {
    std::os::unix::fs::chown(path, Some(uid), Some(gid)).unwrap();
    if path.is_dir() {
        for e in std::fs::read_dir(path).unwrap() {
            chown_all(&e.unwrap().path(), uid, gid);
        }
    }
}

/// One token of a FETCH response: atoms (NIL, numbers, flags, item names)
/// are kept as text; strings (quoted or literal: the same to a client) as
/// bytes; parenthesised lists nested.
#[derive(Clone, PartialEq, Eq)]
enum Tok {
    Atom(String),
    Str(Vec<u8>),
    List(Vec<Tok>),
}

/// As IMAP writes it (every string quoted), for the difference report.
impl std::fmt::Debug for Tok {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Tok::Atom(a) => write!(f, "{a}"),
            Tok::Str(s) => write!(f, "{:?}", String::from_utf8_lossy(s)),
            Tok::List(items) => {
                write!(f, "(")?;
                for (i, t) in items.iter().enumerate() {
                    write!(f, "{}{t:?}", if i > 0 { " " } else { "" })?;
                }
                write!(f, ")")
            }
        }
    }
}

/// Parses tokens from `s` at `*at` up to a closing parenthesis or the end.
fn tokens(s: &[u8], at: &mut usize) -> Vec<Tok> {
    let mut out = Vec::new();
    while *at < s.len() {
        match s[*at] {
            b' ' | b'\r' | b'\n' => *at += 1,
            b')' => {
                *at += 1;
                return out;
            }
            b'(' => {
                *at += 1;
                out.push(Tok::List(tokens(s, at)));
            }
            b'"' => {
                *at += 1;
                let mut v = Vec::new();
                while s[*at] != b'"' {
                    if s[*at] == b'\\' {
                        *at += 1;
                    }
                    v.push(s[*at]);
                    *at += 1;
                }
                *at += 1;
                out.push(Tok::Str(v));
            }
            b'{' => {
                let end = *at + s[*at..].iter().position(|&b| b == b'}').unwrap();
                let n: usize = std::str::from_utf8(&s[*at + 1..end])
                    .unwrap()
                    .trim_end_matches('+')
                    .parse()
                    .unwrap();
                let start = end + 3; // "}\r\n"
                out.push(Tok::Str(s[start..start + n].to_vec()));
                *at = start + n;
            }
            _ => {
                // An atom; a section's brackets hold spaces and parentheses.
                let start = *at;
                let mut depth = 0;
                while *at < s.len() {
                    match s[*at] {
                        b'[' => depth += 1,
                        b']' => depth -= 1,
                        b' ' | b'(' | b')' | b'\r' if depth == 0 => break,
                        _ => {}
                    }
                    *at += 1;
                }
                out.push(Tok::Atom(
                    String::from_utf8_lossy(&s[start..*at]).to_uppercase(),
                ));
            }
        }
    }
    out
}

/// A BODYSTRUCTURE with its media types and subtypes in lower case:
/// they are case-insensitive (RFC 2045 5.1), and the bridge's encoder
/// (imap-types) writes `"TEXT"` where dovecot repeats the header's `"text"`.
fn media_types_lowercase(structure: &Tok) -> Tok {
    let Tok::List(items) = structure else {
        return structure.clone();
    };
    let lower = |t: &Tok| match t {
        Tok::Str(s) => Tok::Str(s.to_ascii_lowercase()),
        other => other.clone(),
    };
    let parts = items
        .iter()
        .take_while(|t| matches!(t, Tok::List(_)))
        .count();
    let items = if parts > 0 {
        // multipart: the parts, then the subtype
        items
            .iter()
            .enumerate()
            .map(|(i, t)| match i {
                i if i < parts => media_types_lowercase(t),
                i if i == parts => lower(t),
                _ => t.clone(),
            })
            .collect()
    } else {
        items
            .iter()
            .enumerate()
            .map(|(i, t)| if i < 2 { lower(t) } else { t.clone() })
            .collect()
    };
    Tok::List(items)
}

/// The items of each `* n FETCH (...)` response, by the mail's Message-ID.
fn fetched(responses: &[String]) -> BTreeMap<String, BTreeMap<String, Tok>> {
    let mut mails = BTreeMap::new();
    for r in responses.iter().filter(|r| r.contains(" FETCH (")) {
        let bytes = r.as_bytes();
        let mut at = r.find(" FETCH ").unwrap() + 7;
        let Tok::List(items) = tokens(bytes, &mut at).remove(0) else {
            panic!("{r}")
        };
        let items: BTreeMap<String, Tok> = items
            .chunks(2)
            .map(|kv| {
                let Tok::Atom(name) = &kv[0] else {
                    panic!("{r}")
                };
                let value = match name.as_str() {
                    "BODYSTRUCTURE" | "BODY" => media_types_lowercase(&kv[1]),
                    _ => kv[1].clone(),
                };
                (name.clone(), value)
            })
            .collect();
        // ENVELOPE's tenth field is the Message-ID.
        let Tok::List(envelope) = &items["ENVELOPE"] else {
            panic!("{r}")
        };
        let Tok::Str(id) = &envelope[9] else {
            panic!("{r}")
        };
        mails.insert(String::from_utf8(id.clone()).unwrap(), items);
    }
    mails
}

/// A server's answers: each mail's FETCH items, and what each search found
/// (as Message-IDs).
struct Answers {
    mails: BTreeMap<String, BTreeMap<String, Tok>>,
    searches: Vec<(String, BTreeSet<String>)>,
}

fn ask(imap: &mut Imap, searches: &[String]) -> Answers {
    imap.ok("SELECT INBOX");
    let mails = fetched(&imap.ok(&format!("UID FETCH 1:* {ITEMS}")));
    let by_uid: BTreeMap<u32, String> = mails
        .iter()
        .map(|(id, items)| {
            let Tok::Atom(uid) = &items["UID"] else {
                panic!()
            };
            (uid.parse().unwrap(), id.clone())
        })
        .collect();
    let searches = searches
        .iter()
        .map(|criteria| {
            let answer = imap.ok(&format!("UID SEARCH {criteria}"));
            let found = answer[0]
                .trim_end()
                .strip_prefix("* SEARCH")
                .unwrap_or_else(|| panic!("{criteria}: {answer:?}"))
                .split_whitespace()
                .map(|uid| by_uid[&uid.parse::<u32>().unwrap()].clone())
                .collect();
            (criteria.clone(), found)
        })
        .collect();
    Answers { mails, searches }
}

#[test]
fn bridge_answers_as_dovecot_does_for_the_same_mails() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    server.device("carol");
    alice.send_to(
        &["bob"],
        "Plain letter",
        "Short ASCII lines.\nA second line.",
    );
    alice.send_to(
        &["bob"],
        "Grüße aus Brüssel",
        "Überprüfung der Unterlagen: ça va.\n",
    );
    alice.send_to(
        &["bob"],
        "He said \"yes\" (twice) \\ once",
        &"A very long line. ".repeat(70),
    );
    // A reply in the thread of the first letter: In-Reply-To, References.
    alice.json(&["reply", "1", "--body", "In the thread."]);
    let trio = alice.create("Trio", &["bob", "carol"]);
    alice.send_in(&trio, "To two people", "Both of you.");
    // A letter with an attachment: multipart/mixed.
    let file = server.dir.path().join("minutes 2024.pdf");
    std::fs::write(
        &file,
        (0..3000u32).map(|i| (i * 7) as u8).collect::<Vec<u8>>(),
    )
    .unwrap();
    alice.json(&[
        "send",
        "--to",
        &common::addr("bob"),
        "--subject",
        "Minutes attached",
        "--body",
        "See the file.",
        "--attach",
        file.to_str().unwrap(),
    ]);
    bob.sync();
    assert_eq!(bob.inbox().len(), 6);

    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut imap = bridge.login(&password);
    imap.ok("SELECT INBOX");
    let mails: Vec<Vec<u8>> = fetched(&imap.ok("UID FETCH 1:* (ENVELOPE BODY.PEEK[])"))
        .into_values()
        .map(|items| match &items["BODY[]"] {
            Tok::Str(bytes) => bytes.clone(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(mails.len(), 6);
    let first = fetched(&imap.ok("UID FETCH 1 ENVELOPE"));
    let first_id = first.keys().next().unwrap();

    let searches: Vec<String> = [
        "ALL",
        "SUBJECT letter",
        "SUBJECT \"said \\\"yes\\\"\"",
        "FROM alice",
        "TO carol",
        "CC carol",
        "BODY second",
        // Inside a base64 body: both search the decoded text.
        "BODY Unterlagen",
        "TEXT thread",
        "TEXT Trio",
        "HEADER In-Reply-To \"\"",
        &format!("HEADER Message-ID \"{first_id}\""),
        "HEADER X-Valise-Conversation \"\"",
        "NOT BODY second",
        "OR SUBJECT Plain FROM carol",
        "LARGER 1000",
        "SMALLER 1000",
        "SENTSINCE 1-Jan-2020",
        "SENTBEFORE 1-Jan-2020",
        "UNSEEN",
        "SEEN",
        "FLAGGED",
        "UNFLAGGED",
        "UNDELETED",
        "ANSWERED",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let bridge_answers = ask(&mut imap, &searches);
    let dovecot = Dovecot::serve(&mails);
    let mut imap = Imap::connect(&dovecot.addr);
    imap.ok("LOGIN u pw");
    let dovecot_answers = ask(&mut imap, &searches);

    let mut differences = Vec::new();
    assert_eq!(
        bridge_answers.mails.keys().collect::<Vec<_>>(),
        dovecot_answers.mails.keys().collect::<Vec<_>>()
    );
    for (id, ours) in &bridge_answers.mails {
        let theirs = &dovecot_answers.mails[id];
        for (item, value) in theirs {
            if item == "UID" {
                continue;
            }
            if ours.get(item) != Some(value) {
                differences.push(format!(
                    "{id} {item}:\n  bridge:  {:?}\n  dovecot: {value:?}",
                    ours.get(item)
                ));
            }
        }
    }
    for ((criteria, ours), (_, theirs)) in bridge_answers
        .searches
        .iter()
        .zip(&dovecot_answers.searches)
    {
        if ours != theirs {
            differences.push(format!(
                "UID SEARCH {criteria}:\n  bridge:  {ours:?}\n  dovecot: {theirs:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
