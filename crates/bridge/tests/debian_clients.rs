//! Debian's own mail programs against a real bridge on loopback, over
//! STARTTLS with the bridge's certificate: swaks (SMTP submission, its
//! refusals and their codes), fetchmail (download everything, keep it) and
//! mbsync (isync: a full sync, idle resyncs, flags back to the bridge).
//! `.ci/run` installs the packages.
// Test helpers outside #[test] functions: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

#[path = "../../cli/tests/common/mod.rs"]
mod common;
mod support;

use common::{Device, Server, addr};
use std::collections::BTreeSet;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::Output;
use support::{Bridge, tool};

/// The port of a `127.0.0.1:PORT` address.
fn port(address: &str) -> &str {
    address.rsplit(':').next().unwrap()
}

/// Output of a client program as text, for assertion messages.
fn transcript(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// A mail as a client saved it, split into head and body, with `\n` line
/// ends (mbsync stores Maildir files with them).
fn head_and_body(mail: &[u8]) -> (String, String) {
    let text = String::from_utf8_lossy(mail).replace("\r\n", "\n");
    let (head, body) = text.split_once("\n\n").unwrap();
    (head.to_owned(), body.to_owned())
}

/// The Message-ID header of a mail as a client saved it.
fn message_id(mail: &[u8]) -> String {
    let (head, _) = head_and_body(mail);
    head.lines()
        .find_map(|l| {
            l.strip_prefix("Message-ID: ")
                .or_else(|| l.strip_prefix("Message-Id: "))
        })
        .unwrap_or_else(|| panic!("no Message-ID in {head}"))
        .trim()
        .to_owned()
}

/// `<message id@valise>` of every letter in `device`'s inbox, read by the
/// `valise` CLI (with the bridge stopped: the home is the bridge's while
/// it runs).
fn inbox_message_ids(device: &Device) -> BTreeSet<String> {
    device
        .inbox()
        .iter()
        .map(|l| {
            let letter = device.read(l["id"].as_i64().unwrap());
            format!("<{}@valise>", letter["message_id"].as_str().unwrap())
        })
        .collect()
}

/// swaks against `bridge`'s SMTP port over STARTTLS, checking the
/// bridge's certificate, logged in as `user` with `password`.
fn swaks(bridge: &Bridge, user: &str, password: &str, args: &[&str]) -> Output {
    tool("swaks")
        .args(["--server", "127.0.0.1", "--port", port(&bridge.smtp)])
        .args(["--tls", "--tls-verify", "--tls-ca-path"])
        .arg(&bridge.cert)
        .args(["--auth-user", user, "--auth-password", password])
        .args(["--from", user])
        .args(args)
        .output()
        .unwrap()
}

/// The first server reply in a swaks transcript that starts with `code`.
fn has_reply(out: &Output, reply: &str) -> bool {
    // swaks marks what the server said over TLS with "<~ " (errors "<~* ").
    transcript(out)
        .lines()
        .any(|l| l.contains(&format!("<~  {reply}")) || l.contains(&format!("<~* {reply}")))
}

#[test]
fn swaks_logs_in_pipelines_and_gets_precise_refusals() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, true);
    let to_alice = ["--to", &alice.user];
    let subject = |s: &'static str| ["--header", s];

    // AUTH PLAIN, then AUTH LOGIN with the envelope pipelined.
    let plain = swaks(
        &bridge,
        &bob.user,
        &password,
        &[
            &["--auth", "PLAIN"][..],
            &to_alice,
            &subject("Subject: By swaks, PLAIN"),
        ]
        .concat(),
    );
    assert_eq!(plain.status.code(), Some(0), "{}", transcript(&plain));
    assert!(has_reply(&plain, "235 2.7.0"), "{}", transcript(&plain));
    assert!(
        has_reply(&plain, "250 2.0.0 sent <"),
        "{}",
        transcript(&plain)
    );
    let login = swaks(
        &bridge,
        &bob.user,
        &password,
        &[
            &["--auth", "LOGIN", "--pipeline"][..],
            &to_alice,
            &subject("Subject: By swaks, LOGIN, pipelined"),
        ]
        .concat(),
    );
    assert_eq!(login.status.code(), Some(0), "{}", transcript(&login));
    assert!(
        has_reply(&login, "334 VXNlcm5hbWU6"),
        "{}",
        transcript(&login)
    );
    // swaks sent MAIL, RCPT and DATA in one go, and read three answers.
    let text = transcript(&login);
    assert!(text.contains("PIPELINING"), "{text}");
    assert!(has_reply(&login, "250 2.0.0 sent <"), "{text}");

    // Refusals, each with docs/BRIDGE.md's code, and its swaks exit status.
    let refused = |args: &[&str], reply: &str, status: i32| {
        let out = swaks(
            &bridge,
            &bob.user,
            &password,
            &[&["--auth", "PLAIN", "--pipeline"][..], args].concat(),
        );
        assert!(has_reply(&out, reply), "{reply}: {}", transcript(&out));
        assert_eq!(out.status.code(), Some(status), "{}", transcript(&out));
    };
    let carol = addr("carol");
    // Not this home's address as the sender.
    refused(&["--from", &carol, "--to", &alice.user], "553 5.7.1", 23);
    // A blind copy, by header or by a recipient the headers do not name.
    refused(
        &[&to_alice[..], &["--add-header", &format!("Bcc: {carol}")]].concat(),
        "550 5.7.1",
        26,
    );
    refused(
        &[
            "--to",
            &format!("{},{carol}", alice.user),
            "--header",
            &format!("To: {}", alice.user),
        ],
        "550 5.7.1",
        26,
    );
    // Not a Valise user (no directory entry), not an address, oneself.
    refused(&["--to", "someone@elsewhere.example"], "550 5.1.1", 26);
    refused(&["--to", "not-an-address"], "501 5.1.3", 24);
    refused(&["--to", &bob.user], "550 5.1.1", 24);
    // A wrong bridge password.
    let wrong = swaks(
        &bridge,
        &bob.user,
        "0123456789abcdef0123456789abcdef",
        &[&["--auth", "PLAIN"][..], &to_alice].concat(),
    );
    assert!(has_reply(&wrong, "535 5.7.8"), "{}", transcript(&wrong));
    assert_eq!(wrong.status.code(), Some(28), "{}", transcript(&wrong));

    // Alice got the two letters accepted, and nothing refused.
    alice.sync();
    let subjects: BTreeSet<String> = alice.subjects().into_iter().collect();
    assert_eq!(
        subjects,
        BTreeSet::from([
            "By swaks, LOGIN, pipelined".to_owned(),
            "By swaks, PLAIN".to_owned()
        ])
    );
}

/// A fetchmail run control file: IMAP over STARTTLS to `bridge` checked
/// against its certificate (by the name `localhost`: fetchmail matches
/// DNS names only, not the certificate's 127.0.0.1), every letter kept on the bridge and handed to
/// an mda that writes it to a file of its own in `out`.
fn fetchmailrc(bridge: &Bridge, user: &str, password: &str, out: &Path) -> String {
    format!(
        "set no syslog\n\
         poll localhost service {port} protocol IMAP auth password\n  \
         user \"{user}\" password \"{password}\" is root here\n  \
         keep fetchall sslproto 'tls1.2+' sslcertck sslcertfile \"{cert}\"\n  \
         mda \"cat > {out}/mail.$$\"\n",
        port = port(&bridge.imap),
        cert = bridge.cert.display(),
        out = out.display(),
    )
}

#[test]
fn fetchmail_keeps_and_downloads_every_letter() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    for i in 0..3 {
        alice.send_to(&["bob"], &format!("For fetchmail {i}"), "A line to fetch.");
    }
    bob.sync();
    let expected = inbox_message_ids(&bob);
    assert_eq!(expected.len(), 3);
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, true);

    let dir = tempfile::tempdir().unwrap();
    let fetched = dir.path().join("fetched");
    std::fs::create_dir(&fetched).unwrap();
    let rc = dir.path().join("fetchmailrc");
    std::fs::write(&rc, fetchmailrc(&bridge, &bob.user, &password, &fetched)).unwrap();
    // fetchmail refuses a run control file others may read.
    std::fs::set_permissions(&rc, std::fs::Permissions::from_mode(0o600)).unwrap();
    let fetch = || {
        let out = tool("fetchmail")
            .args(["-k", "-f"])
            .arg(&rc)
            .env("FETCHMAILHOME", dir.path())
            .output()
            .unwrap();
        assert_eq!(out.status.code(), Some(0), "{}", transcript(&out));
        let mails: Vec<PathBuf> = std::fs::read_dir(&fetched)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        let ids: BTreeSet<String> = mails
            .iter()
            .map(|m| message_id(&std::fs::read(m).unwrap()))
            .collect();
        for m in mails {
            std::fs::remove_file(m).unwrap();
        }
        ids
    };
    assert_eq!(fetch(), expected);
    // -k kept them: they are all there again.
    assert_eq!(fetch(), expected);
    bridge.stop();
    assert_eq!(bob.inbox().len(), 3);
}

/// Letters in the INBOX mbsync syncs (the 10,000-letter figure is
/// scripts/bridge-bench.py's).
const MBSYNC_LETTERS: usize = 50;

/// An mbsync configuration: the bridge's INBOX (IMAP on `imap_port`, STARTTLS
/// checked against its certificate by the name `localhost`) to a Maildir
/// under `dir`, flags both ways, nothing ever expunged.
fn mbsyncrc(imap_port: &str, cert: &Path, user: &str, password: &str, dir: &Path) -> String {
    format!(
        "IMAPAccount bridge\nHost localhost\nPort {imap_port}\nUser {user}\nPass {password}\n\
         SSLType STARTTLS\nCertificateFile {cert}\n\n\
         IMAPStore bridge\nAccount bridge\n\n\
         MaildirStore local\nPath {dir}/mail/\nInbox {dir}/mail/INBOX\n\n\
         Channel inbox\nFar :bridge:INBOX\nNear :local:INBOX\nCreate Near\nSync All\n\
         Expunge None\nSyncState *\n",
        cert = cert.display(),
        dir = dir.display(),
    )
}

/// The mails of a Maildir folder (new/ and cur/), by file name.
fn maildir(folder: &Path) -> Vec<PathBuf> {
    let mut mails: Vec<PathBuf> = ["new", "cur"]
        .iter()
        .flat_map(|sub| std::fs::read_dir(folder.join(sub)).unwrap())
        .map(|e| e.unwrap().path())
        .collect();
    mails.sort();
    mails
}

/// One mbsync run of the `inbox` channel; what it said. mbsync must
/// succeed and never speak of the bridge's UIDVALIDITY (a changed one
/// would make it refuse the folder, or fetch it all again); the one line
/// allowed is its first run's notice that it gave the new Maildir one.
fn mbsync(rc: &Path) -> String {
    let out = tool("mbsync")
        .args(["-V", "-c"])
        .arg(rc)
        .arg("inbox")
        .output()
        .unwrap();
    let said = transcript(&out);
    assert!(out.status.success(), "{said}");
    assert!(
        !said
            .lines()
            .filter(|l| *l != "Maildir notice: no UIDVALIDITY, creating new.")
            .any(|l| l.to_uppercase().contains("UIDVALIDITY")),
        "{said}"
    );
    said
}

/// The header `name` of a mail file.
fn header(mail: &Path, name: &str) -> String {
    let (head, _) = head_and_body(&std::fs::read(mail).unwrap());
    head.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in {head}"))
        .to_owned()
}

#[test]
fn mbsync_syncs_everything_once_and_brings_flags_back() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    // Alice writes through her own bridge: one session, many letters.
    let sent: BTreeSet<String> = {
        let password = support::init(&alice);
        let bridge = Bridge::start(&alice, false);
        let mut smtp = support::Smtp::login(&bridge, &password);
        (0..MBSYNC_LETTERS)
            .map(|i| smtp.send(&alice.user, &bob.user, &format!("Sync me {i}"), "A line."))
            .collect()
    };
    bob.sync();
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), MBSYNC_LETTERS);
    let first = bob.read(inbox[0]["id"].as_i64().unwrap());
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, true);

    let dir = tempfile::tempdir().unwrap();
    let rc = dir.path().join("mbsyncrc");
    let configure = |bridge: &Bridge| {
        let text = mbsyncrc(
            port(&bridge.imap),
            &bridge.cert,
            &bob.user,
            &password,
            dir.path(),
        );
        std::fs::write(&rc, text).unwrap();
    };
    configure(&bridge);
    std::fs::create_dir(dir.path().join("mail")).unwrap();
    mbsync(&rc);
    let folder = dir.path().join("mail").join("INBOX");
    let mails = maildir(&folder);
    // Exactly the letters of `valise inbox`, by Message-ID and Subject.
    let ids: BTreeSet<String> = mails
        .iter()
        .map(|m| message_id(&std::fs::read(m).unwrap()))
        .collect();
    assert_eq!(ids, sent);
    let subjects: BTreeSet<String> = mails.iter().map(|m| header(m, "Subject")).collect();
    let expected: BTreeSet<String> = inbox
        .iter()
        .map(|l| l["subject"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(subjects, expected);
    // And a letter's words, as `valise read` shows them.
    let id = format!("<{}@valise>", first["message_id"].as_str().unwrap());
    let mail = mails
        .iter()
        .find(|m| message_id(&std::fs::read(m).unwrap()) == id);
    let (_, body) = head_and_body(&std::fs::read(mail.unwrap()).unwrap());
    assert_eq!(body, first["body"].as_str().unwrap());

    // Nothing to do the second time, nor after the bridge restarted.
    mbsync(&rc);
    assert_eq!(maildir(&folder), mails);
    bridge.stop();
    let bridge = Bridge::start(&bob, true);
    configure(&bridge);
    mbsync(&rc);
    assert_eq!(maildir(&folder), mails);

    // Flagged and seen in the Maildir (a rename, as a Maildir reader
    // marks), then synced: the bridge has the flags.
    let mail = &mails[0];
    let name = mail.file_name().unwrap().to_str().unwrap();
    let uid = name
        .split(",U=")
        .nth(1)
        .unwrap()
        .split([',', ':'])
        .next()
        .unwrap()
        .to_owned();
    let base = name.split(':').next().unwrap();
    std::fs::rename(mail, folder.join("cur").join(format!("{base}:2,FS"))).unwrap();
    mbsync(&rc);
    let out = tool("curl")
        .args(["-sS", "--ssl-reqd", "--cacert"])
        .arg(&bridge.cert)
        .args(["-u", &format!("{}:{password}", bob.user)])
        .arg(format!("imap://{}/INBOX", bridge.imap))
        .args(["-X", &format!("UID FETCH {uid} FLAGS")])
        .output()
        .unwrap();
    let flags = String::from_utf8(out.stdout).unwrap();
    assert!(
        flags.contains("\\Seen") && flags.contains("\\Flagged"),
        "{flags}{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
