//! Story: bob reads alice's letters with a mail client through his bridge.
//! Every line the bridge says is decoded with imap-codec (support::Imap).
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::{Server, addr};
use std::time::{Duration, Instant};
use support::{Bridge, Imap};

/// The UIDs and bytes a client caches, for comparing across restarts.
fn snapshot(imap: &mut Imap) -> (String, Vec<String>) {
    let select = imap.ok("EXAMINE INBOX");
    let validity = select
        .iter()
        .find(|r| r.contains("UIDVALIDITY"))
        .unwrap()
        .clone();
    let mut bodies = imap.ok("UID FETCH 1:* (UID BODY.PEEK[])");
    bodies.pop(); // the tagged OK
    (validity, bodies)
}

/// Selects `folder` until it holds `n` letters (the bridge syncs on its own).
fn select_until(imap: &mut Imap, folder: &str, n: usize) -> Vec<String> {
    let start = Instant::now();
    loop {
        let r = imap.ok(&format!("SELECT {folder}"));
        if r.iter().any(|l| l.starts_with(&format!("* {n} EXISTS"))) {
            return r;
        }
        assert!(start.elapsed() < Duration::from_secs(30), "{r:#?}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

#[test]
fn bob_reads_alices_letters_in_his_mail_client() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(
        &["bob"],
        "Visa for the delegation",
        "Please confirm the dates.",
    );
    alice.send_to(&["bob"], "Réunion à Genève", "Salle 3, à 10 h.\nMerci.");
    let password = support::init(&bob);
    assert_eq!(password.len(), 32);
    assert!(bob.home.join("bridge/cert.pem").exists());

    let bridge = Bridge::start(&bob, false);
    let mut imap = Imap::connect(&bridge.imap);
    assert!(imap.greeting.starts_with("* OK"), "{}", imap.greeting);
    let caps = imap.ok("CAPABILITY");
    assert!(
        caps[0].starts_with("* CAPABILITY IMAP4REV1 ") && caps[0].contains(" IDLE "),
        "{caps:?}"
    );
    assert!(caps[0].contains("AUTH=PLAIN") && caps[0].contains("SPECIAL-USE"));
    assert!(caps[0].contains(" UIDPLUS "), "{caps:?}");
    assert_eq!(
        imap.cmd("SELECT INBOX").last().unwrap(),
        "t2 NO log in first\r\n"
    );

    // A wrong password is refused, slowly; the right one opens.
    let t = Instant::now();
    let wrong = imap.cmd(&format!(
        "LOGIN {} 0123456789abcdef0123456789abcdef",
        bob.user
    ));
    assert!(wrong.last().unwrap().contains(" NO "), "{wrong:?}");
    assert!(t.elapsed() >= Duration::from_millis(900));
    let other = imap.cmd(&format!("LOGIN {} {password}", alice.user));
    assert!(
        other.last().unwrap().contains(" NO "),
        "another user: {other:?}"
    );
    imap.ok(&format!("LOGIN {} {password}", bob.user));
    imap.ok("ID (\"name\" \"transcript\")");

    // Folders, with their special uses; conversations listed, not
    // subscribed (once the bridge's own sync has joined alice's).
    select_until(&mut imap, "INBOX", 2);
    imap.ok("UNSELECT");
    let list = imap.ok("LIST \"\" \"*\"").join("");
    for want in [
        "* LIST (\\HasNoChildren) \"/\" INBOX",
        "* LIST (\\HasNoChildren \\Sent) \"/\" Sent",
        "\\Drafts) \"/\" Drafts",
        "\\Archive) \"/\" Archive",
        "\\Trash) \"/\" Trash",
        "\"/\" Conversations/alice@mfa.example",
        "(\\Noselect \\HasChildren) \"/\" Conversations",
    ] {
        assert!(list.contains(want), "{want} missing from {list}");
    }
    let lsub = imap.ok("LSUB \"\" \"*\"").join("");
    assert!(
        lsub.contains("INBOX") && !lsub.contains("Conversations"),
        "{lsub}"
    );
    assert!(imap.ok("LIST \"\" \"%\"").join("").contains("Sent"));
    let delimiter = imap.ok("LIST \"\" \"\"");
    assert!(
        delimiter[0].starts_with("* LIST (\\Noselect) \"/\" \"\""),
        "{delimiter:?}"
    );

    let select = select_until(&mut imap, "INBOX", 2);
    let select = select.join("");
    assert!(select.contains("[UIDVALIDITY "), "{select}");
    assert!(select.contains("[UIDNEXT 3]"), "{select}");
    assert!(select.contains("[READ-WRITE]"), "{select}");
    let status = imap.ok("STATUS INBOX (MESSAGES UNSEEN UIDNEXT)");
    assert!(
        status[0].contains("MESSAGES 2") && status[0].contains("UNSEEN 2"),
        "{status:?}"
    );

    // What a client shows in its list: envelopes, subjects as the header
    // has them (encoded words: an IMAP4rev1 string carries no 8-bit text).
    let env = imap.ok("UID FETCH 1:* (UID FLAGS ENVELOPE)");
    assert_eq!(env.len(), 3, "{env:#?}");
    assert!(
        env[0].starts_with("* 1 FETCH (UID 1 ENVELOPE ("),
        "{}",
        env[0]
    );
    assert!(env[0].contains("\"Visa for the delegation\""), "{}", env[0]);
    assert!(
        env[0].contains("((NIL NIL \"alice\" \"mfa.example\"))"),
        "{}",
        env[0]
    );
    // "Réunion à Genève"
    assert!(
        env[1].contains("\"=?utf-8?b?UsOpdW5pb24gw6AgR2Vuw6h2ZQ==?=\""),
        "{}",
        env[1]
    );

    // Headers a client asks for, the whole letter, parts and partials.
    let hdr = imap.ok("UID FETCH 2 (BODY.PEEK[HEADER.FIELDS (SUBJECT FROM)])");
    assert!(
        hdr[0].contains(&format!("From: {}\r\n", addr("alice"))),
        "{}",
        hdr[0]
    );
    assert!(hdr[0].contains("Subject: =?utf-8?b?"), "{}", hdr[0]);
    assert!(!hdr[0].contains("Message-ID"), "{}", hdr[0]);
    let unseen = imap.ok("UID SEARCH UNSEEN");
    assert_eq!(unseen[0], "* SEARCH 1 2\r\n");
    let whole = imap.ok("UID FETCH 1 (BODY[])");
    assert!(
        whole[0].contains("Please confirm the dates.\r\n"),
        "{}",
        whole[0]
    );
    assert!(whole[0].contains("X-Valise-Thread: "), "{}", whole[0]);
    assert!(
        whole[0].contains("FLAGS (\\Seen)"),
        "reading marks seen: {}",
        whole[0]
    );
    assert_eq!(imap.ok("UID SEARCH UNSEEN")[0], "* SEARCH 2\r\n");
    assert_eq!(imap.ok("UID SEARCH SUBJECT visa")[0], "* SEARCH 1\r\n");
    assert_eq!(
        imap.ok(&format!("UID SEARCH FROM {}", addr("alice")))[0],
        "* SEARCH 1 2\r\n"
    );
    assert_eq!(imap.ok("UID SEARCH UID 2:*")[0], "* SEARCH 2\r\n");
    assert_eq!(
        imap.ok("UID SEARCH SINCE 1-Jan-2020 SEEN")[0],
        "* SEARCH 1\r\n"
    );
    assert_eq!(imap.ok("SEARCH NOT SEEN")[0], "* SEARCH 2\r\n");
    let part = imap.ok(
        "UID FETCH 2 (BODY.PEEK[1] BODY.PEEK[TEXT]<0.8> BODYSTRUCTURE RFC822.SIZE INTERNALDATE)",
    );
    assert!(
        part[0].contains("BODY[1] {34}\r\nU2FsbGUgMywgw6AgMTAgaC4KTWVyY2ku\r\n"),
        "{}",
        part[0]
    );
    assert!(
        part[0].contains(
            "BODYSTRUCTURE (\"TEXT\" \"plain\" (\"charset\" \"utf-8\") NIL NIL \"base64\" 34 1 \
             NIL NIL NIL NIL)"
        ),
        "{}",
        part[0]
    );
    assert!(
        part[0].contains("BODY[TEXT]<0> \"U2FsbGUg\""),
        "{}",
        part[0]
    );
    assert!(part[0].contains("INTERNALDATE \""), "{}", part[0]);

    // Flags stick; EXPUNGE takes a letter out of the folder only.
    imap.ok("UID STORE 2 +FLAGS (\\Flagged)");
    assert_eq!(imap.ok("UID SEARCH FLAGGED")[0], "* SEARCH 2\r\n");
    let silent = imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(silent.len(), 1, "{silent:?}");
    // UID EXPUNGE takes only the named letters marked deleted.
    imap.ok("UID STORE 2 +FLAGS.SILENT (\\Deleted)");
    let gone = imap.ok("UID EXPUNGE 1");
    assert_eq!(gone[0], "* 1 EXPUNGE\r\n");
    assert_eq!(gone.len(), 2, "{gone:?}");
    imap.ok("UID STORE 2 -FLAGS.SILENT (\\Deleted)");
    assert_eq!(imap.ok("EXPUNGE").len(), 1, "nothing left to expunge");
    assert_eq!(imap.ok("UID SEARCH ALL")[0], "* SEARCH 2\r\n");

    // Sent and the conversation folder.
    let sent = imap.ok("STATUS Sent (MESSAGES)");
    assert!(sent[0].contains("MESSAGES 0"), "{sent:?}");
    let in_conv = imap
        .ok("EXAMINE \"Conversations/alice@mfa.example\"")
        .join("");
    assert!(
        in_conv.contains("* 2 EXISTS") && in_conv.contains("[READ-ONLY]"),
        "{in_conv}"
    );
    assert!(
        imap.cmd("STORE 1 +FLAGS (\\Seen)")
            .last()
            .unwrap()
            .contains(" NO ")
    );
    imap.ok("UNSELECT");
    assert!(imap.cmd("FETCH 1 FLAGS").last().unwrap().contains(" NO "));
    let before = snapshot(&mut imap);
    imap.ok("CLOSE");
    let bye = imap.cmd("LOGOUT");
    assert!(bye[0].starts_with("* BYE"), "{bye:?}");

    // Same UIDVALIDITY, UIDs and bytes after a restart.
    bridge.stop();
    let bridge = Bridge::start(&bob, false);
    let mut imap = bridge.login(&password);
    assert_eq!(snapshot(&mut imap), before);

    // A letter bob receives reaches an IDLE session as EXISTS.
    imap.ok("SELECT INBOX");
    imap.send("idle1 IDLE");
    assert!(imap.response().starts_with("+ "));
    let sent_at = Instant::now();
    alice.send_to(&["bob"], "Pushed", "No polling.");
    let pushed = imap.response();
    assert_eq!(pushed, "* 2 EXISTS\r\n");
    assert!(sent_at.elapsed() < Duration::from_secs(10));
    imap.send("DONE");
    assert_eq!(imap.response(), "idle1 OK IDLE terminated\r\n");
    let env = imap.ok("FETCH 2 (ENVELOPE)");
    assert!(env[0].contains("\"Pushed\""), "{}", env[0]);
    // UIDs are never given twice, even to a new letter after an expunge.
    assert_eq!(imap.ok("UID SEARCH ALL")[0], "* SEARCH 2 3\r\n");

    // Filing: MOVE to Archive takes it out of INBOX for good; COPY to
    // Trash keeps it; the folders that say what a letter is refuse.
    // UIDPLUS (RFC 4315): the UIDs they have there are told.
    let moved = imap.ok("UID MOVE 3 Archive");
    assert!(
        moved[0].starts_with("* OK [COPYUID ") && moved[0].contains(" 3 1]"),
        "{moved:?}"
    );
    assert_eq!(moved[1], "* 2 EXPUNGE\r\n", "{moved:?}");
    let copied = imap.ok("UID COPY 2 Trash");
    assert!(
        copied[0].contains(" OK [COPYUID ") && copied[0].contains(" 2 1]"),
        "{copied:?}"
    );
    assert!(imap.cmd("UID COPY 2 Sent").last().unwrap().contains(" NO "));
    assert_eq!(imap.ok("UID SEARCH ALL")[0], "* SEARCH 2\r\n");
    let archive = imap.ok("EXAMINE Archive").join("");
    assert!(archive.contains("* 1 EXISTS"), "{archive}");
    assert!(imap.ok("FETCH 1 (ENVELOPE)")[0].contains("\"Pushed\""));
    let trash = imap.ok("STATUS Trash (MESSAGES)");
    assert!(trash[0].contains("MESSAGES 1"), "{trash:?}");
    imap.ok("SELECT INBOX");
    imap.ok("NOOP");
    assert_eq!(
        imap.ok("UID SEARCH ALL")[0],
        "* SEARCH 2\r\n",
        "moved letters stay moved"
    );
}

#[test]
fn binds_beyond_loopback_are_refused() {
    let server = Server::start();
    let bob = server.device("bob");
    support::init(&bob);
    let out = support::run(&bob, &["--imap", "0.0.0.0:0", "--smtp", "127.0.0.1:0"]);
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("[not_loopback]") && err.contains("0.0.0.0"),
        "{err}"
    );
    let out = support::run(&bob, &["--smtp", "[::]:0", "--imap", "[::1]:0"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("[not_loopback]"));
}

/// The bridge serves with glibc's mmap threshold fixed (malloc.rs): it
/// started itself again with the tunable set.
#[test]
fn the_bridge_serves_with_glibcs_malloc_threshold_fixed() {
    let server = Server::start();
    let bob = server.device("bob");
    support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let environ = std::fs::read(format!("/proc/{}/environ", bridge.pid())).unwrap();
    let tunables = environ
        .split(|&b| b == 0)
        .find_map(|v| v.strip_prefix(b"GLIBC_TUNABLES="))
        .map(|v| String::from_utf8_lossy(v).into_owned());
    assert_eq!(
        tunables.as_deref(),
        Some("glibc.malloc.mmap_threshold=131072")
    );
    let mut imap = Imap::connect(&bridge.imap);
    imap.ok("NOOP");
}

#[test]
fn a_reset_password_stops_the_old_one_at_once() {
    let server = Server::start();
    let bob = server.device("bob");
    let old = support::init(&bob);
    let again = support::run(&bob, &["init"]);
    assert!(!again.status.success(), "init twice");
    let new = support::password_of(&support::run(&bob, &["password", "--reset"]));
    assert_ne!(old, new);
    let bridge = Bridge::start(&bob, false);
    let mut imap = Imap::connect(&bridge.imap);
    let r = imap.cmd(&format!("LOGIN {} {old}", bob.user));
    assert!(r.last().unwrap().contains(" NO "), "{r:?}");
    // AUTHENTICATE PLAIN, with its continuation.
    let plain = base64_plain(&bob.user, &new);
    imap.send("a AUTHENTICATE PLAIN");
    assert!(imap.response().starts_with("+"));
    imap.send(&plain);
    let done = imap.until("a ");
    assert!(done.last().unwrap().starts_with("a OK"), "{done:?}");
    // The password never reaches the log.
    let log = bridge.log_text();
    assert!(!log.contains(&new) && !log.contains(&old), "{log}");
}

/// Red team: a local process that learnt the bridge password keeps no
/// session past a reset. Sessions logged in with the old password (one
/// between commands, one in IDLE, one SMTP submission) end, or must log
/// in again, once `password --reset` ran beside the running bridge.
#[test]
fn a_reset_password_ends_the_sessions_logged_in_with_the_old_one() {
    let server = Server::start();
    let bob = server.device("bob");
    let old = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut between = bridge.login(&old);
    between.ok("SELECT INBOX");
    let mut idling = bridge.login(&old);
    idling.ok("SELECT INBOX");
    idling.send("i IDLE");
    assert!(idling.response().starts_with("+ "));
    let mut smtp = support::Smtp::connect(&bridge.smtp);
    smtp.send(&format!(
        "EHLO client.example\r\nAUTH PLAIN {}\r\n",
        base64_plain(&bob.user, &old)
    ));
    assert!(smtp.reply().starts_with("250"));
    assert!(smtp.reply().starts_with("235 "));

    let new = support::password_of(&support::run(&bob, &["password", "--reset"]));

    // The next command of a session logged in before is not served.
    between.send("f FETCH 1:* (UID)");
    let answer = between.response();
    assert!(answer.starts_with("* BYE "), "{answer:?}");
    // IDLE ends without a command (the bridge's next step notices).
    let answer = idling.response();
    assert!(answer.starts_with("* BYE "), "{answer:?}");
    // SMTP asks for the new password before it takes a mail.
    smtp.send("MAIL FROM:<x@y.example>\r\n");
    let answer = smtp.reply();
    assert!(answer.starts_with("530 "), "{answer:?}");
    smtp.send(&format!("AUTH PLAIN {}\r\n", base64_plain(&bob.user, &new)));
    assert!(smtp.reply().starts_with("235 "));
    bridge.login(&new).ok("SELECT INBOX");
}

fn base64_plain(user: &str, pass: &str) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(format!("\0{user}\0{pass}"))
}

/// A local user without the password who announces a large literal before
/// logging in is cut off after a little of it, not buffered up to the
/// 64 MiB an APPEND may carry.
#[test]
fn a_large_literal_before_login_ends_the_session() {
    use std::io::{Read, Write};
    let server = Server::start();
    let bob = server.device("bob");
    support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut tcp = std::net::TcpStream::connect(&bridge.imap).unwrap();
    tcp.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut greeting = [0u8; 512];
    assert!(tcp.read(&mut greeting).unwrap() > 0);
    tcp.write_all(b"a LOGIN {60000000+}\r\n").unwrap();
    let chunk = vec![b'x'; 1024 * 1024];
    for _ in 0..8 {
        // The bridge may close while the rest is still on its way.
        if tcp.write_all(&chunk).is_err() {
            break;
        }
    }
    let mut rest = Vec::new();
    match tcp.read_to_end(&mut rest) {
        Ok(_) => {}
        Err(e) => assert_eq!(
            e.kind(),
            std::io::ErrorKind::ConnectionReset,
            "the session is still open: {e}"
        ),
    }
}

/// A draft APPENDed to Drafts stays in bob's sealed home, comes back byte
/// for byte, and goes with EXPUNGE; nothing of it reaches valised.
#[test]
fn drafts_are_kept_in_the_home_only() {
    const CANARY: &str = "Draft canary 0c7e";
    let server = Server::start();
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut imap = bridge.login(&password);
    let draft = format!(
        "From: {bob}\r\nTo: alice@mfa.example\r\nSubject: Unfinished\r\nMessage-ID: <d1@client>\r\n\
         MIME-Version: 1.0\r\nContent-Type: multipart/mixed; boundary=\"b1\"\r\n\r\n\
         --b1\r\nContent-Type: text/plain; charset=us-ascii\r\n\r\n{CANARY}\r\n\
         --b1\r\nContent-Type: application/pdf; name=\"a.pdf\"\r\nContent-Transfer-Encoding: base64\r\n\r\n\
         JVBERi0=\r\n--b1--\r\n",
        bob = bob.user
    );
    let appended = imap.ok(&format!(
        "APPEND Drafts (\\Seen) {{{}+}}\r\n{draft}",
        draft.len()
    ));
    assert!(appended[0].contains("OK [APPENDUID "), "{appended:?}");
    assert!(appended[0].contains(" 1] "), "{appended:?}");
    let select = imap.ok("SELECT Drafts").join("");
    assert!(select.contains("* 1 EXISTS"), "{select}");
    let whole = imap.ok("UID FETCH 1 BODY.PEEK[]");
    assert!(
        whole[0].ends_with(&format!("BODY[] {{{}}}\r\n{draft})\r\n", draft.len())),
        "byte for byte: {whole:?}"
    );
    let head =
        imap.ok("FETCH 1 (FLAGS RFC822.SIZE ENVELOPE BODYSTRUCTURE BODY.PEEK[1])")[0].clone();
    for want in [
        &format!("RFC822.SIZE {}", draft.len()),
        "\"Unfinished\"",
        "\\Seen",
        "(\"TEXT\" \"plain\" (\"charset\" \"us-ascii\") NIL NIL \"7bit\"",
        "(\"application\" \"pdf\" (\"name\" \"a.pdf\") NIL NIL \"base64\" 8",
        "\"mixed\"",
        &format!("BODY[1] \"{CANARY}\""),
    ] {
        assert!(head.contains(want), "{want} missing from {head}");
    }
    assert!(
        imap.cmd("UID COPY 1 Archive")
            .last()
            .unwrap()
            .contains(" NO [CANNOT]")
    );
    imap.ok("STORE 1 +FLAGS.SILENT (\\Deleted)");
    assert_eq!(imap.ok("EXPUNGE")[0], "* 1 EXPUNGE\r\n");
    let again = imap.ok("SELECT Drafts").join("");
    assert!(
        again.contains("* 0 EXISTS") && again.contains("[UIDNEXT 2]"),
        "{again}"
    );

    // Nowhere outside the sealed home: not valised's files, not the log.
    assert!(!bridge.log_text().contains(CANARY));
    for dir in [server.data(), bob.home.clone()] {
        for file in support::files_under(&dir) {
            let bytes = std::fs::read(&file).unwrap_or_default();
            assert!(
                !common::contains(&bytes, CANARY.as_bytes()),
                "{} holds the draft",
                file.display()
            );
        }
    }
}

/// A FETCH of more letters than the bridge makes at a time is written out
/// batch by batch (never whole in memory); commands the client pipelined
/// behind it wait for it and are answered after it, in order (a FETCH,
/// which the bridge writes itself, after what imap-next queued before it),
/// and every line decodes.
#[test]
fn a_long_fetch_goes_out_in_batches_and_pipelined_commands_wait_their_turn() {
    // More than one batch (64 letters) of the bridge's FETCH.
    const LETTERS: usize = 70;
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    {
        let password = support::init(&alice);
        let bridge = Bridge::start(&alice, false);
        let mut smtp = support::Smtp::login(&bridge, &password);
        for i in 0..LETTERS {
            smtp.send_letter(&alice.user, &bob.user, &format!("Batch {i}"), "A line.");
        }
    }
    bob.sync();
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, false);
    let mut imap = bridge.login(&password);
    select_until(&mut imap, "INBOX", LETTERS);

    imap.send(
        "p1 UID FETCH 1:* (UID BODY.PEEK[])\r\np2 NOOP\r\np3 UID STORE 1 +FLAGS (\\Flagged)\r\n\
         p4 UID FETCH 2 (FLAGS)\r\np5 UID FETCH 3 (FLAGS)",
    );
    let fetched = imap.until("p1 ");
    assert!(fetched.last().unwrap().starts_with("p1 OK"), "{fetched:#?}");
    let uids: Vec<usize> = fetched
        .iter()
        .filter(|l| l.contains(" FETCH ("))
        .map(|l| {
            let at = l.find("UID ").unwrap() + 4;
            l[at..]
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .unwrap()
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(uids, (1..=LETTERS).collect::<Vec<_>>());
    assert!(fetched.iter().any(|l| l.contains("Batch 69")));
    let noop = imap.until("p2 ");
    assert!(noop.last().unwrap().starts_with("p2 OK"), "{noop:#?}");
    let store = imap.until("p3 ");
    assert!(store.last().unwrap().starts_with("p3 OK"), "{store:#?}");
    assert!(store.iter().any(|l| l.contains("\\Flagged")), "{store:#?}");
    for (tag, seq) in [("p4", "* 2 FETCH"), ("p5", "* 3 FETCH")] {
        let fetch = imap.until(&format!("{tag} "));
        assert!(
            fetch.len() == 2 && fetch[0].starts_with(seq) && fetch[1].starts_with(tag),
            "{fetch:#?}"
        );
    }
}
