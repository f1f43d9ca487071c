//! SMTP submission as a pipelining client speaks it, line by line: the
//! order of replies, their codes, and 250 only once valised took the
//! letter (a server that is down gets a 451, not a lie).
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use base64::Engine as _;
use common::{Device, Server};
use std::io::{BufRead, Write};
use support::{Bridge, Smtp};

fn letter(from: &str, to: &str, subject: &str) -> String {
    format!("From: {from}\r\nTo: {to}\r\nSubject: {subject}\r\n\r\nBody.\r\n..dot line\r\n.\r\n")
}

#[test]
fn a_pipelining_client_sends_and_is_told_the_truth() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::connect(&bridge.smtp);

    // Out of order: each refused with its own code.
    smtp.send("MAIL FROM:<x@y>\r\n");
    assert!(smtp.reply().starts_with("530 5.7.0 "));
    smtp.send("EHLO client.example\r\n");
    let ehlo = smtp.reply();
    for ext in [
        "PIPELINING",
        "SIZE ",
        "8BITMIME",
        "ENHANCEDSTATUSCODES",
        "AUTH PLAIN LOGIN",
    ] {
        assert!(ehlo.contains(ext), "{ext} missing: {ehlo}");
    }
    assert!(!ehlo.contains("STARTTLS"), "no TLS with --no-tls: {ehlo}");

    // One batch: AUTH, MAIL, RCPT, DATA; the replies come in order.
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{password}", bob.user));
    smtp.send(&format!(
        "AUTH PLAIN {plain}\r\nMAIL FROM:<{}> SIZE=200\r\nRCPT TO:<{}>\r\nDATA\r\n",
        bob.user, alice.user
    ));
    assert!(smtp.reply().starts_with("235 2.7.0 "));
    assert!(smtp.reply().starts_with("250 2.1.0 "));
    assert!(smtp.reply().starts_with("250 2.1.5 "));
    assert!(smtp.reply().starts_with("354 "));
    smtp.send(&letter(&bob.user, &alice.user, "Pipelined"));
    let accepted = smtp.reply();
    assert!(accepted.starts_with("250 2.0.0 sent <"), "{accepted}");
    assert!(accepted.trim_end().ends_with("@valise>"), "{accepted}");
    alice.sync();
    let inbox = alice.inbox();
    assert_eq!(inbox[0]["subject"], "Pipelined");
    let read = alice.read(inbox[0]["id"].as_i64().unwrap());
    assert_eq!(read["body"], "Body.\n.dot line\n", "dot-stuffing undone");

    // Sequencing errors.
    smtp.send("DATA\r\n");
    assert!(smtp.reply().starts_with("503 5.5.1 "));
    smtp.send("RCPT TO:<alice@mfa.example>\r\n");
    assert!(smtp.reply().starts_with("503 5.5.1 "));
    smtp.send(&format!("MAIL FROM:<{}> SIZE=999999999\r\n", bob.user));
    assert!(smtp.reply().starts_with("552 5.3.4 "));
    smtp.send(&format!(
        "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\n",
        bob.user, bob.user
    ));
    assert!(smtp.reply().starts_with("250 "));
    assert!(smtp.reply().starts_with("550 5.1.1 "), "writing to oneself");
    smtp.send("RSET\r\nNOOP\r\nBDAT 10 LAST\r\n");
    assert!(smtp.reply().starts_with("250 2.0.0 "));
    assert!(smtp.reply().starts_with("250 2.0.0 "));
    assert!(smtp.reply().starts_with("502 5.5.1 "));

    // valised down: the letter is not acknowledged, so no 250.
    server.stop();
    smtp.send(&format!(
        "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n",
        bob.user, alice.user
    ));
    assert!(smtp.reply().starts_with("250 "));
    assert!(smtp.reply().starts_with("250 "));
    assert!(smtp.reply().starts_with("354 "));
    let down = format!(
        "Message-ID: <retry-1@client.example>\r\n{}",
        letter(&bob.user, &alice.user, "While the server is down")
    );
    smtp.send(&down);
    let refused = smtp.reply();
    assert!(refused.starts_with("451 4.4.1 "), "{refused}");

    // The client tries again once valised is back: the letter kept in the
    // outbox goes (once), and the retry is told so, not sent again.
    server.restart();
    for _ in 0..2 {
        smtp.send(&format!(
            "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n",
            bob.user, alice.user
        ));
        assert!(smtp.reply().starts_with("250 "));
        assert!(smtp.reply().starts_with("250 "));
        assert!(smtp.reply().starts_with("354 "));
        smtp.send(&down);
        let sent = smtp.reply();
        assert!(sent.starts_with("250 2.0.0 sent <"), "{sent}");
    }
    smtp.send("QUIT\r\n");
    assert!(smtp.reply().starts_with("221 2.0.0 "));
    bridge.stop();
    alice.sync();
    let copies = alice
        .subjects()
        .iter()
        .filter(|s| *s == "While the server is down")
        .count();
    assert_eq!(copies, 1, "a retried mail is one letter");
}

/// A mail from `from` to `to` (RCPT and To alike) answering `parent`.
fn answer(smtp: &mut Smtp, from: &str, to: &[String], parent: &str, subject: &str) -> String {
    smtp.send(&format!("MAIL FROM:<{from}>\r\n"));
    assert!(smtp.reply().starts_with("250 "));
    for rcpt in to {
        smtp.send(&format!("RCPT TO:<{rcpt}>\r\n"));
        assert!(smtp.reply().starts_with("250 "));
    }
    smtp.send("DATA\r\n");
    assert!(smtp.reply().starts_with("354 "));
    smtp.send(&format!(
        "From: {from}\r\nTo: {}\r\nSubject: {subject}\r\nIn-Reply-To: <{parent}@valise>\r\n\r\nAnswer.\r\n.\r\n",
        to.join(", ")
    ));
    smtp.reply()
}

/// A mail client's Reply (to the sender only) to a letter of a group
/// reaches the sender alone, never the rest of the group; a Reply All
/// goes in the thread.
#[test]
fn a_reply_reaches_exactly_the_recipients_the_client_named() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let group = alice.create("Budget", &["bob", "carol"]);
    alice.send_in(&group, "Plans", "For the three of us.");
    bob.sync();
    carol.sync();
    let plans = bob.read(bob.inbox()[0]["id"].as_i64().unwrap());
    let parent = plans["message_id"].as_str().unwrap().to_owned();
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::connect(&bridge.smtp);
    smtp.send("EHLO client.example\r\n");
    smtp.reply();
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{password}", bob.user));
    smtp.send(&format!("AUTH PLAIN {plain}\r\n"));
    assert!(smtp.reply().starts_with("235 "));

    let only_alice = [alice.user.clone()];
    let sent = answer(
        &mut smtp,
        &bob.user,
        &only_alice,
        &parent,
        "Re: Plans (private)",
    );
    assert!(sent.starts_with("250 2.0.0 "), "{sent}");
    let everyone = [alice.user.clone(), carol.user.clone()];
    let sent = answer(&mut smtp, &bob.user, &everyone, &parent, "Re: Plans (all)");
    assert!(sent.starts_with("250 2.0.0 "), "{sent}");
    bridge.stop();

    alice.sync();
    carol.sync();
    let subjects = |d: &common::Device| -> Vec<String> {
        d.inbox()
            .iter()
            .map(|l| l["subject"].as_str().unwrap().to_owned())
            .collect()
    };
    let carols = subjects(&carol);
    assert!(
        !carols.contains(&"Re: Plans (private)".to_owned()),
        "{carols:?}"
    );
    assert!(carols.contains(&"Re: Plans (all)".to_owned()), "{carols:?}");
    for letter in alice.inbox() {
        let read = alice.read(letter["id"].as_i64().unwrap());
        match read["subject"].as_str().unwrap() {
            "Re: Plans (private)" => {
                assert_ne!(read["conversation"], group.as_str(), "{read}");
                assert!(read["in_reply_to"].is_null(), "{read}");
            }
            "Re: Plans (all)" => {
                assert_eq!(read["conversation"], group.as_str(), "{read}");
                assert_eq!(read["in_reply_to"], parent.as_str(), "{read}");
            }
            _ => {}
        }
    }
}

/// A local user without the password who answers AUTH's challenge with a
/// line that never ends is cut off, not buffered for ever.
#[test]
fn an_endless_auth_line_ends_the_session() {
    let server = Server::start();
    let bob = server.device("bob");
    support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::connect(&bridge.smtp);
    smtp.send("EHLO client.example\r\nAUTH PLAIN\r\n");
    assert!(smtp.reply().starts_with("250"));
    assert!(smtp.reply().starts_with("334"));
    let chunk = "A".repeat(64 * 1024);
    for _ in 0..4 {
        // The bridge may close while the rest is still on its way.
        if smtp.writer.write_all(chunk.as_bytes()).is_err() {
            break;
        }
    }
    let refused = smtp.reply();
    assert!(refused.starts_with("500 5.5.6 "), "{refused}");
    let mut rest = String::new();
    assert_eq!(smtp.reader.read_line(&mut rest).unwrap_or(0), 0, "{rest}");
}

/// Red team: a mail with a file that the client sends again after a 451
/// is the letter it became, also when the 451 came before the letter
/// existed (its file's upload was cut short: the engine keeps it as a
/// draft). Each retry made a new draft, and every draft went once valised
/// was back: as many copies of the letter as the client tried (a server
/// that fails uploads for a while multiplies letters).
#[test]
fn a_retried_mail_with_a_file_is_one_letter() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::connect(&bridge.smtp);
    let plain =
        base64::engine::general_purpose::STANDARD.encode(format!("\0{}\0{password}", bob.user));
    smtp.send(&format!("EHLO client.example\r\nAUTH PLAIN {plain}\r\n"));
    assert!(smtp.reply().starts_with("250"));
    assert!(smtp.reply().starts_with("235 "));
    let submit = |smtp: &mut Smtp, mail: &str| {
        smtp.send(&format!(
            "MAIL FROM:<{}>\r\nRCPT TO:<{}>\r\nDATA\r\n",
            bob.user, alice.user
        ));
        assert!(smtp.reply().starts_with("250 "));
        assert!(smtp.reply().starts_with("250 "));
        assert!(smtp.reply().starts_with("354 "));
        smtp.send(mail);
        smtp.reply()
    };
    let first = submit(&mut smtp, &letter(&bob.user, &alice.user, "Opening"));
    assert!(first.starts_with("250 2.0.0 sent <"), "{first}");

    let with_file = format!(
        "From: {bob}\r\nTo: {alice}\r\nSubject: With a file\r\n\
         Message-ID: <retry-file@client.example>\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the file.\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n.\r\n",
        bob = bob.user,
        alice = alice.user
    );
    server.stop();
    for _ in 0..2 {
        let refused = submit(&mut smtp, &with_file);
        assert!(refused.starts_with("451 "), "{refused}");
    }
    server.restart();
    let sent = submit(&mut smtp, &with_file);
    assert!(sent.starts_with("250 2.0.0 sent <"), "{sent}");
    smtp.send("QUIT\r\n");
    assert!(smtp.reply().starts_with("221 2.0.0 "));
    bridge.stop();
    // Any draft left behind would go now.
    bob.sync();
    alice.sync();
    assert_eq!(
        copies(&alice, "With a file"),
        1,
        "a retried mail is one letter"
    );
}

/// A mail client's Forward of a marked letter keeps its `[LABEL]` subject
/// prefix, or quotes its `X-Valise-Marking` header: the mail goes marked at
/// least that high, so the handling rules refuse it (550 5.7.1) where the
/// letter itself could not go, and a mail that names a marking needing no
/// accreditation reaches its reader marked.
#[test]
fn a_forward_of_a_marked_letter_keeps_its_marking() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&alice);
    let bridge = Bridge::start(&alice, false);
    let mut smtp = Smtp::login(&bridge, &password);

    // No accreditation authority here: nobody may read EU RESTRICTED.
    let refused = |smtp: &mut Smtp, subject: &str, body: &str| {
        smtp.begin_mail(&alice.user, &bob.user);
        smtp.send(&format!(
            "From: {}\r\nTo: {}\r\nSubject: {subject}\r\n\r\n{body}\r\n.\r\n",
            alice.user, bob.user
        ));
        let answer = smtp.reply();
        assert!(answer.starts_with("550 5.7.1 "), "{subject}: {answer}");
        assert!(answer.contains("EU RESTRICTED"), "{answer}");
    };
    refused(&mut smtp, "Fwd: [EU RESTRICTED] Mandate", "See below.");
    refused(
        &mut smtp,
        "Fwd: Mandate",
        "-------- Forwarded Message --------\r\n> X-Valise-Marking: EU RESTRICTED\r\n> The mandate.",
    );
    smtp.send_letter(&alice.user, &bob.user, "Fwd: [TLP:GREEN] Visit", "Below.");
    bob.sync();
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    assert_eq!(inbox[0]["marking"], "TLP:GREEN");
}

/// Red team (issue 11, links): the intruder holding the server's database
/// makes it keep no blob a letter names (a trigger voids every link). A
/// mail with a file is answered 451 (kept, sent on a later sync), never a
/// permanent refusal while its draft stays and goes later; the bridge does
/// not upload the file again at every sync while the server refuses; once
/// the server keeps blobs again, the bridge's own sync sends it, once.
#[test]
fn a_mail_whose_blobs_the_server_will_not_keep_waits_and_then_goes_once() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::login(&bridge, &password);
    server.keeps_no_blob();
    smtp.begin_mail(&bob.user, &alice.user);
    smtp.send(&format!(
        "From: {bob}\r\nTo: {alice}\r\nSubject: Unkept file\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the file.\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\n\
         Content-Disposition: attachment; filename=\"a.pdf\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\nJVBERi0xLjQK\r\n--b1--\r\n.\r\n",
        bob = bob.user,
        alice = alice.user
    ));
    let answer = smtp.reply();
    assert!(answer.starts_with("451 "), "{answer}");
    // The bridge syncs every half second; while the server keeps refusing,
    // the file is not uploaded again at each sync, only after a wait that
    // doubles (the send made the blob and its one re-upload: two).
    std::thread::sleep(std::time::Duration::from_secs(4));
    let blobs: i64 = server
        .db()
        .query_row("SELECT count(*) FROM blobs", [], |r| r.get(0))
        .unwrap();
    assert!(blobs <= 3, "{blobs} uploads of one file in 4 s");

    server.keeps_blobs_again();
    within_a_minute("the mail that waited never went", || {
        alice.sync();
        alice.subjects().iter().any(|s| s == "Unkept file")
    });
    smtp.send("QUIT\r\n");
    assert!(smtp.reply().starts_with("221 "));
    bridge.stop();
    bob.sync();
    alice.sync();
    assert_eq!(copies(&alice, "Unkept file"), 1);
}

/// Red team (issue 11, drafts): the mail client was told 451, "kept in
/// the Valise outbox, not yet accepted; it is sent on the next sync", so
/// its user sends nothing again. The intruder holding the server keeps no
/// blob, and refuses the file for good (a blob limit below it, 413) when
/// the bridge's own sync uploads it again. The draft is dropped, as a
/// refusal for good must be, but nothing but the bridge's log said so: the
/// letter silently never went. Now the device raises `letter_not_sent`.
#[test]
fn a_waiting_mail_refused_for_good_later_is_not_dropped_silently() {
    let mut server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut smtp = Smtp::login(&bridge, &password);
    server.keeps_no_blob();
    smtp.begin_mail(&bob.user, &alice.user);
    // 1.5 MB: over the 1 MiB the server will allow.
    let file: Vec<u8> = (0..1_500_000u32).map(|i| (i % 251) as u8).collect();
    let encoded = base64::engine::general_purpose::STANDARD.encode(&file);
    let lines: Vec<&str> = encoded
        .as_bytes()
        .chunks(76)
        .map(|l| std::str::from_utf8(l).unwrap())
        .collect();
    smtp.send(&format!(
        "From: {bob}\r\nTo: {alice}\r\nSubject: Refused later\r\nMIME-Version: 1.0\r\n\
         Content-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\nSee the file.\r\n\
         --b1\r\nContent-Type: application/octet-stream; name=\"a.bin\"\r\n\
         Content-Disposition: attachment; filename=\"a.bin\"\r\n\
         Content-Transfer-Encoding: base64\r\n\r\n{body}\r\n--b1--\r\n.\r\n",
        bob = bob.user,
        alice = alice.user,
        body = lines.join("\r\n"),
    ));
    let answer = smtp.reply();
    assert!(answer.starts_with("451 "), "{answer}");

    // Still keeping no blob: the next try uploads the file again, refused.
    server.stop();
    server.restart_with(&["--max-blob-mib", "1"]);
    // The bridge tries again after its wait (5 s) and is refused for good.
    within_a_minute("the bridge never tried the draft again", || {
        bob.json(&["outbox"]) == serde_json::json!([])
    });

    let details = bob.alert_details("letter_not_sent");
    assert_eq!(details.len(), 1, "the dropped letter was not told of");
    assert!(!details[0].contains("Refused later"), "{details:?}");
    alice.sync();
    assert!(!alice.subjects().iter().any(|s| s == "Refused later"));
}

/// How many of `reader`'s letters are titled `subject`.
fn copies(reader: &Device, subject: &str) -> usize {
    reader.subjects().iter().filter(|s| *s == subject).count()
}

/// Checks `done` every 300 ms until it holds; fails with `why` after a
/// minute.
fn within_a_minute(why: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "{why}");
        std::thread::sleep(std::time::Duration::from_millis(300));
    }
}
