//! Stories with real mail clients on loopback: Python's imaplib and
//! smtplib (tests/clients/python_story.py) and curl, both over STARTTLS
//! with the bridge's own certificate. Afterwards no letter's words are in
//! the bridge's log or, unsealed, anywhere in the home (NO-PLAINTEXT).
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::{Device, Server, addr};
use serde_json::Value;
use std::path::Path;
use support::{Bridge, tool};

/// Words only letters carry: found anywhere else, content leaked.
const CANARY_SUBJECT: &str = "Canary subject 7f3a";
const CANARY_BODY: &str = "Canary body 91c2e";

/// Asserts no canary is in the bridge's log or in any file of the home.
fn no_plaintext(bridge: &Bridge, home: &Path) {
    let log = bridge.log_text();
    // Trace logging was on (support::Bridge): the check reads real lines.
    assert!(log.contains("TRACE"), "{log}");
    for canary in [CANARY_SUBJECT, CANARY_BODY] {
        assert!(!log.contains(canary), "the bridge's log holds {canary}");
        for file in support::files_under(home) {
            let bytes = std::fs::read(&file).unwrap();
            assert!(
                !bytes.windows(canary.len()).any(|w| w == canary.as_bytes()),
                "{} holds {canary}",
                file.display()
            );
        }
    }
}

fn alice_and_bob(server: &Server) -> (Device, Device) {
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], CANARY_SUBJECT, CANARY_BODY);
    (alice, bob)
}

#[test]
fn bob_answers_alice_from_python_imaplib_and_smtplib() {
    let server = Server::start();
    let (alice, bob) = alice_and_bob(&server);
    server.device("carol");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, true);
    let imap_port = bridge.imap.rsplit(':').next().unwrap().to_owned();
    let smtp_port = bridge.smtp.rsplit(':').next().unwrap().to_owned();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients/python_story.py");
    let out = tool("python3")
        .arg(script)
        .args([&imap_port, &smtp_port])
        .arg(&bridge.cert)
        .args([&bob.user, &password, &alice.user])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python: {}\nbridge log:\n{}",
        String::from_utf8_lossy(&out.stderr),
        bridge.log_text()
    );
    let story: Value = serde_json::from_slice(&out.stdout).unwrap();

    // Reading: TLS before the password, then the letter as written.
    assert!(
        story["login_before_tls"]
            .as_str()
            .unwrap()
            .contains("LOGINDISABLED")
            || story["login_before_tls"]
                .as_str()
                .unwrap()
                .contains("STARTTLS"),
        "{story}"
    );
    assert_eq!(story["subject"], CANARY_SUBJECT);
    assert_eq!(story["body"], format!("{CANARY_BODY}\r\n"));
    let folders = story["folders"].to_string();
    assert!(
        folders.contains("\\\\Sent") && folders.contains("INBOX"),
        "{folders}"
    );

    // Sending: what EHLO offers, and what is refused, with precise codes.
    assert_eq!(story["auth_before_tls"], 530);
    for ext in [
        "8bitmime",
        "auth",
        "enhancedstatuscodes",
        "pipelining",
        "size",
    ] {
        assert!(story["ehlo"].to_string().contains(ext), "{ext}: {story}");
    }
    assert_eq!(story["wrong_password"], 535);
    assert_eq!(story["auth_login"], 235);
    assert_eq!(story["reply_refused"], serde_json::json!({}));
    assert_eq!(story["fresh_refused"], serde_json::json!({}));
    assert_eq!(story["foreign_sender"], 553);
    let not_an_address = story["not_an_address"][0].as_i64().unwrap();
    assert!((500..600).contains(&not_an_address), "{story}");
    assert_eq!(story["bcc"], 550, "{story}");
    assert_eq!(story["unknown_user"], 550, "{story}\n{}", bridge.log_text());

    // The client's copy in Sent is the letter sent, not a second one.
    assert_eq!(story["append_sent"][0], "OK", "{story}");
    assert!(
        story["append_sent"][1]
            .as_str()
            .unwrap()
            .starts_with("[APPENDUID "),
        "{story}"
    );
    assert_eq!(story["append_unknown"][0], "NO", "{story}");
    assert!(
        story["sent_status"]
            .as_str()
            .unwrap()
            .contains("MESSAGES 2"),
        "{story}"
    );

    // Alice has the answer in the thread of her letter, and the new one.
    alice.sync();
    let inbox = alice.inbox();
    let subjects: Vec<&str> = inbox
        .iter()
        .map(|l| l["subject"].as_str().unwrap())
        .collect();
    assert_eq!(
        subjects,
        [
            format!("Re: {CANARY_SUBJECT}").as_str(),
            "A new thread from Python"
        ]
    );
    let reply = alice.read(inbox[0]["id"].as_i64().unwrap());
    let first = alice.read(1);
    assert_eq!(reply["in_reply_to"], first["message_id"]);
    assert_eq!(reply["thread"], first["thread"]);
    assert_eq!(reply["body"], "Confirmed from a mail client.\n");
    let fresh = alice.read(inbox[1]["id"].as_i64().unwrap());
    assert_ne!(fresh["thread"], first["thread"]);
    assert_eq!(fresh["from"], addr("bob"));

    no_plaintext(&bridge, &bob.home);
}

#[test]
fn curl_lists_fetches_searches_and_sends() {
    let server = Server::start();
    let (alice, bob) = alice_and_bob(&server);
    let password = support::init(&bob);
    let bridge = Bridge::start_with(&bob, true, &["--imaps", "127.0.0.1:0"]);
    // Wait for the bridge's sync (a mail client would show an empty INBOX).
    support::Imap::connect(&bridge.imap);
    let base = format!("imap://{}", bridge.imap);
    let curl = |args: &[&str]| {
        let out = tool("curl")
            .args(["-sS", "--ssl-reqd", "--cacert"])
            .arg(&bridge.cert)
            .args(["-u", &format!("{}:{password}", bob.user)])
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "curl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    };
    let mut search = String::new();
    for _ in 0..100 {
        search = curl(&[&format!("{base}/INBOX"), "-X", "UID SEARCH ALL"]);
        if search.contains("SEARCH 1") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert_eq!(search, "* SEARCH 1\r\n");
    // IMAP over TLS from the first byte, on its own port.
    let imaps = format!("imaps://{}/INBOX", bridge.imaps.as_deref().unwrap());
    assert_eq!(curl(&[&imaps, "-X", "UID SEARCH ALL"]), "* SEARCH 1\r\n");
    let list = curl(&[&format!("{base}/")]);
    assert!(
        list.contains("\"/\" INBOX") && list.contains("\\Sent"),
        "{list}"
    );
    let letter = curl(&[&format!("{base}/INBOX;UID=1")]);
    assert!(
        letter.contains(&format!("Subject: {CANARY_SUBJECT}\r\n")),
        "{letter}"
    );
    assert!(
        letter.ends_with(&format!("\r\n\r\n{CANARY_BODY}\r\n")),
        "{letter}"
    );

    let mail = bob.home.with_file_name("curl-mail.eml");
    std::fs::write(
        &mail,
        format!(
            "From: {}\r\nTo: {}\r\nSubject: Sent by curl\r\n\r\nOver SMTP submission.\r\n",
            bob.user, alice.user
        ),
    )
    .unwrap();
    curl(&[
        &format!("smtp://{}", bridge.smtp),
        "--mail-from",
        &bob.user,
        "--mail-rcpt",
        &alice.user,
        "-T",
        mail.to_str().unwrap(),
    ]);
    alice.sync();
    let inbox = alice.inbox();
    assert_eq!(inbox.len(), 1);
    assert_eq!(inbox[0]["subject"], "Sent by curl");
    // The letter bob sent is in his Sent folder.
    let sent = curl(&[&format!("{base}/Sent"), "-X", "UID SEARCH ALL"]);
    assert_eq!(sent, "* SEARCH 1\r\n");

    no_plaintext(&bridge, &bob.home);
}
