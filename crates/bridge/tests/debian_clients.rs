//! Debian's own mail programs against a real bridge on loopback, over
//! STARTTLS with the bridge's certificate: swaks (SMTP submission, its
//! refusals and their codes), fetchmail (download everything, keep it),
//! mbsync (isync: a full sync, idle resyncs, flags back to the bridge) and
//! neomutt in tmux (index, pager, reply in the thread, news by IDLE).
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
            .map(|i| smtp.send_letter(&alice.user, &bob.user, &format!("Sync me {i}"), "A line."))
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

/// A terminal for a full-screen mail client: a tmux server of its own (on a
/// socket in `dir`), driven by send-keys and read by capture-pane.
struct Tmux {
    socket: PathBuf,
}

impl Tmux {
    /// Runs `command` (with `env`) in a new 160x50 session.
    fn start(dir: &Path, command: &str, env: &[(&str, &Path)]) -> Self {
        let tmux = Self {
            socket: dir.join("tmux.sock"),
        };
        let mut args = vec!["new-session", "-d", "-x", "160", "-y", "50"];
        let env: Vec<String> = env
            .iter()
            .map(|(k, v)| format!("{k}={}", v.display()))
            .collect();
        for e in &env {
            args.extend(["-e", e]);
        }
        args.push(command);
        tmux.run(&args);
        tmux
    }

    fn run(&self, args: &[&str]) -> String {
        let out = tool("tmux")
            .arg("-S")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap();
        assert!(out.status.success(), "tmux {args:?}: {}", transcript(&out));
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Types keys (tmux key names: "Enter", "q", ...).
    fn keys(&self, keys: &[&str]) {
        self.run(&[&["send-keys"][..], keys].concat());
    }

    fn screen(&self) -> String {
        self.run(&["capture-pane", "-p"])
    }

    /// The screen once it shows `text` (within 30 s).
    fn wait_for(&self, text: &str) -> String {
        let start = std::time::Instant::now();
        loop {
            let screen = self.screen();
            if screen.contains(text) {
                return screen;
            }
            assert!(
                start.elapsed() < std::time::Duration::from_secs(30),
                "the screen never showed {text:?}:\n{screen}"
            );
            std::thread::sleep(std::time::Duration::from_millis(200));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = tool("tmux")
            .arg("-S")
            .arg(&self.socket)
            .arg("kill-server")
            .output();
    }
}

/// neomutt's settings for bob's bridge, as the README gives them: IMAP and
/// SMTP over STARTTLS (the bridge's certificate trusted), a copy of what
/// is sent APPENDed to Sent, IDLE on and
/// polling rare (mail_check 120 s: news must come by IDLE), replies
/// without questions, and an "editor" that writes the answer.
fn muttrc(bridge: &Bridge, password: &str, editor: &Path) -> String {
    let user = &bridge.user;
    format!(
        "set folder = \"imap://{user}@127.0.0.1:{imap}/\"\n\
         set spoolfile = \"+INBOX\"\n\
         set imap_pass = \"{password}\"\n\
         set smtp_url = \"smtp://{user}@127.0.0.1:{smtp}/\"\n\
         set smtp_pass = \"{password}\"\n\
         set from = \"{user}\"\nset realname = \"Bob\"\n\
         set ssl_starttls = yes\nset ssl_force_tls = yes\n\
         set certificate_file = \"{cert}\"\n\
         set imap_idle = yes\nset mail_check = 120\nset timeout = 1\n\
         set record = \"+Sent\"\nset header_cache = \"\"\nset message_cachedir = \"\"\n\
         set fast_reply = yes\nset include = yes\nset askcc = no\nset askbcc = no\n\
         set editor = \"{editor}\"\nset edit_headers = no\nset wait_key = no\n\
         set sort = date\nset help = no\nset beep = no\n",
        imap = port(&bridge.imap),
        smtp = port(&bridge.smtp),
        cert = bridge.cert.display(),
        editor = editor.display(),
    )
}

#[test]
fn neomutt_reads_replies_in_the_thread_and_is_told_of_new_letters() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let first = alice.send_to(&["bob"], "Agenda for Tuesday", "Room 4, at nine.");
    bob.sync();
    let password = support::init(&bob);
    let bridge = Bridge::start(&bob, true);

    let dir = tempfile::tempdir().unwrap();
    let editor = dir.path().join("editor.sh");
    // The answer goes above the quoted letter.
    std::fs::write(
        &editor,
        "#!/bin/sh\nsed -i '1i Agreed, room 4.\\n' \"$1\"\n",
    )
    .unwrap();
    std::fs::set_permissions(&editor, std::fs::Permissions::from_mode(0o755)).unwrap();
    let rc = dir.path().join("muttrc");
    std::fs::write(&rc, muttrc(&bridge, &password, &editor)).unwrap();
    let home = dir.path().join("home");
    std::fs::create_dir(&home).unwrap();
    let mutt = Tmux::start(
        dir.path(),
        &format!("neomutt -n -F {}", rc.display()),
        &[("HOME", &home)],
    );

    // The index lists the letter; Enter shows it in the pager.
    mutt.wait_for("Agenda for Tuesday");
    mutt.keys(&["Enter"]);
    mutt.wait_for("Room 4, at nine.");
    // r: a reply (the editor writes it), y: send it.
    mutt.keys(&["r"]);
    mutt.wait_for("NeoMutt: Compose");
    mutt.keys(&["y"]);
    mutt.wait_for("Mail sent");
    mutt.keys(&["q"]);

    // A new letter reaches the index while neomutt idles: mail_check is
    // 120 s, so within the 30 s of wait_for it came by IDLE.
    alice.send_to(&["bob"], "Pushed while idle", "Shown at once.");
    mutt.wait_for("Pushed while idle");
    drop(mutt);
    // neomutt's copy in Sent is the letter sent, not a second one.
    let sent_folder = tool("curl")
        .args(["-sS", "--ssl-reqd", "--cacert"])
        .arg(&bridge.cert)
        .args(["-u", &format!("{}:{password}", bob.user)])
        .arg(format!("imap://{}/Sent", bridge.imap))
        .args(["-X", "UID SEARCH ALL"])
        .output()
        .unwrap();
    assert_eq!(transcript(&sent_folder), "* SEARCH 1\r\n");

    // Alice has the answer, in the thread of her letter.
    alice.sync();
    let inbox = alice.inbox();
    assert_eq!(inbox.len(), 1, "{inbox:?}");
    let reply = alice.read(inbox[0]["id"].as_i64().unwrap());
    let sent = alice.read(first["id"].as_i64().unwrap());
    assert_eq!(reply["subject"], "Re: Agenda for Tuesday");
    assert_eq!(reply["in_reply_to"], sent["message_id"]);
    assert_eq!(reply["thread"], sent["thread"]);
    assert!(
        reply["body"]
            .as_str()
            .unwrap()
            .starts_with("Agreed, room 4.\n"),
        "{reply}"
    );
}
