//! A real `valised` on a loopback port with real TLS and a real SQLite file,
//! and real devices driven through the real `valise` binary.
#![allow(dead_code)]
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

pub mod officer;

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const DOMAIN: &str = "mfa.example";
pub const PASSPHRASE: &str = "correct horse battery staple";

/// The `valise` binary: cargo names it to this crate's tests; another
/// crate's tests that share these helpers (the bridge's) find it beside
/// their own binary's directory (`target/<profile>/deps/..`), where
/// `cargo test --workspace` builds it.
pub fn valise_bin() -> PathBuf {
    match option_env!("CARGO_BIN_EXE_valise") {
        Some(p) => PathBuf::from(p),
        None => {
            let exe = std::env::current_exe().unwrap();
            let p = exe.parent().unwrap().parent().unwrap().join("valise");
            assert!(
                p.exists(),
                "{} missing: run `cargo test --workspace`",
                p.display()
            );
            p
        }
    }
}

/// `valised` is built beside `valise` by `cargo test --workspace`.
pub fn valised_bin() -> PathBuf {
    let p = valise_bin().with_file_name("valised");
    assert!(
        p.exists(),
        "{} missing: run `cargo test --workspace`",
        p.display()
    );
    p
}

/// A running server in its own temporary data directory; killed on drop.
pub struct Server {
    pub dir: tempfile::TempDir,
    pub url: String,
    child: Child,
    /// What `valised init` printed (server and directory keys).
    pub init_output: String,
    /// Extra `valised run` flags, kept for restarts.
    extra: Vec<String>,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a server with extra `valised run` flags (e.g. rate limits).
    pub fn start_with(extra: &[&str]) -> Self {
        let extra: Vec<String> = extra.iter().map(|s| s.to_string()).collect();
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let out = Command::new(valised_bin())
            .args(["init", "--data"])
            .arg(&data)
            .args(["--domain", DOMAIN])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "init: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let init_output = String::from_utf8(out.stdout).unwrap();
        let (child, url) = Self::try_spawn_on(&data, "127.0.0.1:0", &extra)
            .expect("valised exited before listening");
        Self {
            dir,
            url,
            child,
            init_output,
            extra,
        }
    }

    /// Starts `valised run` on `listen` and waits for its "listening on"
    /// line; `None` (child reaped) if it exits first, e.g. the port is taken.
    fn try_spawn_on(data: &Path, listen: &str, extra: &[String]) -> Option<(Child, String)> {
        let mut child = Command::new(valised_bin())
            .args([
                "run",
                "--directory-interval-ms",
                "50",
                "--listen",
                listen,
                "--data",
            ])
            .arg(data)
            .args(extra)
            .arg("--log-file")
            .arg(data.join("valised.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        loop {
            match lines.next() {
                Some(line) => {
                    if let Some(rest) = line.unwrap().strip_prefix("listening on ") {
                        return Some((child, rest.trim().to_owned()));
                    }
                }
                None => {
                    let _ = child.wait();
                    return None;
                }
            }
        }
    }

    /// The loopback address the server listens on (`127.0.0.1:PORT`).
    pub fn listen_addr(&self) -> String {
        self.url
            .strip_prefix("https://")
            .expect("server url is https://host:port")
            .to_owned()
    }

    /// `kill -9` of the server process: no shutdown, no flush, no goodbye.
    pub fn kill9(&mut self) {
        // `Child::kill` is SIGKILL on Unix.
        use std::os::unix::process::ExitStatusExt as _;
        self.child.kill().unwrap();
        let status = self.child.wait().unwrap();
        // Anything but death by SIGKILL means it had stopped on its own.
        assert_eq!(
            status.signal(),
            Some(9),
            "valised died before the kill: {status}"
        );
    }

    /// Freezes the server (SIGSTOP) until [`Server::resume`]: a network
    /// that stalls, for as long as the test likes.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Lets a [paused](Server::pause) server go on (SIGCONT).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .args([signal, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success(), "kill {signal} failed");
    }

    /// A graceful stop (SIGTERM): requests in flight finish, and the audit
    /// log gets its last entries, `server_stopped` and a checkpoint.
    pub fn stop(&mut self) {
        self.signal("-TERM");
        let status = self.child.wait().unwrap();
        assert!(status.success(), "valised did not stop cleanly: {status}");
    }

    /// Starts the server again on the same data directory and port (after
    /// [`Server::kill9`]) and returns once it listens. Retries briefly if the
    /// port is not free yet.
    pub fn restart(&mut self) {
        let listen = self.listen_addr();
        let mut tries = 0;
        let (child, url) = loop {
            if let Some(started) = Self::try_spawn_on(&self.data(), &listen, &self.extra) {
                break started;
            }
            tries += 1;
            assert!(tries < 50, "valised does not start again on {listen}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        };
        assert_eq!(url, self.url, "valised came back on another address");
        self.child = child;
        // The line is printed after bind; make sure a connection is accepted.
        std::net::TcpStream::connect(&listen).unwrap();
    }

    /// As [`Server::restart`], with these extra `valised run` flags from
    /// now on (an administrator changing the server's limits).
    pub fn restart_with(&mut self, extra: &[&str]) {
        self.extra = extra.iter().map(|s| s.to_string()).collect();
        self.restart();
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca(&self) -> PathBuf {
        self.data().join("tls").join("ca.pem")
    }

    /// `valised admin invite`: a one-time enrolment code.
    pub fn invite(&self, user: &str) -> String {
        self.admin(&["invite", &addr(user)])
    }

    /// `valised admin --data D <args>` (the administrator's command, which
    /// works while the server runs); returns its stdout, trimmed.
    pub fn admin(&self, args: &[&str]) -> String {
        let out = Command::new(valised_bin())
            .args(["admin", "--data"])
            .arg(self.data())
            .args(args)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "valised admin {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// A backup of the server's database as it is now (`VACUUM INTO`, as
    /// an operator's backup job would take it), at the returned path.
    pub fn backup(&self) -> PathBuf {
        let path = self
            .dir
            .path()
            .join(format!("backup-{}.db", rand::random::<u32>()));
        self.db()
            .execute("VACUUM INTO ?1", [path.to_str().unwrap()])
            .unwrap();
        path
    }

    /// Enrols a new device for `user` (a new home each call) with a
    /// fresh invite code. The first device of a user founds their
    /// identity; a later one is pending (exit status 3) until approved,
    /// see [`Server::second_device`].
    pub fn device(&self, user: &str) -> Device {
        let code = self.invite(user);
        self.enroll(user, &code)
    }

    /// Enrols a device for `user` with this invite code.
    pub fn enroll(&self, user: &str, code: &str) -> Device {
        let home = self
            .dir
            .path()
            .join(format!("home-{user}-{}", rand::random::<u32>()));
        let (mut dev, out) = self.try_enroll(home, user, code, &["--json"], &[]);
        let pending = out.status.code() == Some(3);
        assert!(
            out.status.success() || pending,
            "enroll {user}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert_eq!(v["status"], if pending { "pending" } else { "approved" });
        dev.link_code = pending.then(|| v["link_code"].as_str().unwrap().to_owned());
        dev
    }

    /// Runs `valise enroll` for `user` into `home` with this code, extra
    /// arguments and environment, and leaves the verdict to the caller:
    /// the device and the command's output (for an enrolment refused, or
    /// made with a pinned authority or a shifted clock).
    pub fn try_enroll(
        &self,
        home: PathBuf,
        user: &str,
        code: &str,
        extra: &[&str],
        env: &[(&str, &str)],
    ) -> (Device, Output) {
        let dev = Device {
            home,
            user: addr(user),
            link_code: None,
        };
        let ca = self.ca();
        let mut args = vec![
            "enroll",
            &self.url,
            &dev.user,
            code,
            "--ca",
            ca.to_str().unwrap(),
        ];
        args.extend(extra);
        let out = dev.run_env(&args, env);
        (dev, out)
    }

    /// Enrols another device for `user` and has `approver`, an approved
    /// device of the same user, approve it by its link code.
    pub fn second_device(&self, user: &str, approver: &Device) -> Device {
        let dev = self.device(user);
        approver.ok(&["devices", "approve", dev.link_code.as_deref().unwrap()]);
        dev
    }

    /// Opens the server's database as the attacker who holds the disk would.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().join("valised.db")).unwrap()
    }

    /// The intruder makes the server keep no blob a letter names: a
    /// trigger in its database voids every link, so every link answers
    /// `missing` (until [`Server::keeps_blobs_again`]).
    pub fn keeps_no_blob(&self) {
        self.db()
            .execute_batch(
                "CREATE TRIGGER red_team_no_link BEFORE UPDATE OF linked_at_ms ON blobs
                 BEGIN SELECT RAISE(IGNORE); END;",
            )
            .unwrap();
    }

    pub fn keeps_blobs_again(&self) {
        self.db()
            .execute_batch("DROP TRIGGER red_team_no_link")
            .unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One enrolled device: a home driven through the `valise` binary.
pub struct Device {
    pub home: PathBuf,
    pub user: String,
    /// The link code it showed if it enrolled pending.
    pub link_code: Option<String>,
}

impl Device {
    /// Runs `f` on this device's client in the test's process: a modified
    /// client (the library's test-only `rogue_*` calls).
    pub fn rogue<T>(&self, f: impl AsyncFnOnce(&mut valise_client::Client) -> T) -> T {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let passphrase = valise_client::Passphrase::new(PASSPHRASE.into());
        let mut client = valise_client::Client::open(&self.home, &passphrase).unwrap();
        rt.block_on(f(&mut client))
    }

    /// `valise save ID --attachment N --out OUT`.
    pub fn save(&self, id: i64, n: usize, out: &Path) -> Output {
        self.run(&[
            "save",
            &id.to_string(),
            "--attachment",
            &n.to_string(),
            "--out",
            out.to_str().unwrap(),
        ])
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_env(args, &[])
    }

    /// Runs with extra environment variables (e.g. `VALISE_FAILPOINT`).
    pub fn run_env(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        Command::new(valise_bin())
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .env("VALISE_PASSPHRASE", PASSPHRASE)
            .env_remove("VALISE_HOME")
            .envs(env.iter().copied())
            .output()
            .unwrap()
    }

    /// Starts `valise --json <args>` as a child process (stdout and stderr
    /// piped) without waiting for it.
    pub fn spawn_json(&self, args: &[&str]) -> Child {
        Command::new(valise_bin())
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .arg("--json")
            .env("VALISE_PASSPHRASE", PASSPHRASE)
            .env_remove("VALISE_HOME")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }

    /// Runs and expects success; returns stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "valise {args:?} failed: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Runs with `--json` and parses stdout.
    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = args.to_vec();
        all.push("--json");
        serde_json::from_str(&self.ok(&all)).unwrap()
    }

    /// Syncs and returns the report.
    pub fn sync(&self) -> Value {
        self.json(&["sync"])
    }

    pub fn inbox(&self) -> Vec<Value> {
        self.json(&["inbox"]).as_array().unwrap().clone()
    }

    /// Sends to people; returns the local letter id and conversation.
    pub fn send_to(&self, to: &[&str], subject: &str, body: &str) -> Value {
        let mut args = vec!["send"];
        let to: Vec<String> = to.iter().map(|u| format!("{u}@{DOMAIN}")).collect();
        for u in &to {
            args.extend(["--to", u]);
        }
        args.extend(["--subject", subject, "--body", body]);
        self.json(&args)
    }

    /// Sends to people (as [`Device::send_to`]); the id of the
    /// conversation the letter went in.
    pub fn start_conversation(&self, to: &[&str], subject: &str, body: &str) -> String {
        self.send_to(to, subject, body)["conversation"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `send --to USER --json` that may fail (the caller checks how):
    /// what a refused or held letter gives.
    pub fn try_send_to(&self, to: &str, subject: &str) -> Output {
        self.try_send(&["--to", &addr(to)], subject, None)
    }

    /// As [`Device::try_send_to`], in a conversation.
    pub fn try_send_in(&self, conv: &str, subject: &str) -> Output {
        self.try_send(&["--conversation", conv], subject, None)
    }

    /// As [`Device::try_send_to`], to these people, with `--marking`.
    pub fn try_send_marked_to(&self, to: &[&str], subject: &str, marking: &str) -> Output {
        let to: Vec<String> = to.iter().map(|u| addr(u)).collect();
        let dest: Vec<&str> = to.iter().flat_map(|u| ["--to", u.as_str()]).collect();
        self.try_send(&dest, subject, Some(marking))
    }

    /// As [`Device::try_send_in`], with `--marking`.
    pub fn try_send_marked_in(&self, conv: &str, subject: &str, marking: &str) -> Output {
        self.try_send(&["--conversation", conv], subject, Some(marking))
    }

    /// `send DEST --subject S --body b [--marking M] --json`: the one
    /// builder of the sends a test expects may be refused.
    fn try_send(&self, dest: &[&str], subject: &str, marking: Option<&str>) -> Output {
        let mut args = vec!["send"];
        args.extend(dest);
        args.extend(["--subject", subject, "--body", "b"]);
        if let Some(m) = marking {
            args.extend(["--marking", m]);
        }
        args.push("--json");
        self.run(&args)
    }

    pub fn send_in(&self, conv: &str, subject: &str, body: &str) -> Value {
        self.json(&send_in_args(conv, subject, body))
    }

    pub fn read(&self, id: i64) -> Value {
        self.json(&["read", &id.to_string()])
    }

    /// `conversation create` with these people (short names); its id.
    pub fn create(&self, name: &str, members: &[&str]) -> String {
        self.create_conversation(name, members, &[])
    }

    /// As [`Device::create`], with `--ceiling` (issue 11).
    pub fn create_with_ceiling(&self, name: &str, members: &[&str], ceiling: &str) -> String {
        self.create_conversation(name, members, &["--ceiling", ceiling])
    }

    fn create_conversation(&self, name: &str, members: &[&str], extra: &[&str]) -> String {
        let members: Vec<String> = members.iter().map(|m| addr(m)).collect();
        let mut args = vec!["conversation", "create", "--name", name];
        args.extend(extra);
        for m in &members {
            args.extend(["--member", m.as_str()]);
        }
        self.json(&args)["conversation"]
            .as_str()
            .unwrap()
            .to_owned()
    }

    /// `conversation list --json`: every conversation this device holds.
    pub fn conversations(&self) -> Vec<Value> {
        self.json(&["conversation", "list"])
            .as_array()
            .unwrap()
            .clone()
    }

    /// Kinds of this device's alerts, oldest first.
    pub fn alert_kinds(&self) -> Vec<String> {
        self.json(&["alerts"])
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["kind"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Whether this device holds an alert of `kind`.
    pub fn has_alert(&self, kind: &str) -> bool {
        self.alert_kinds().iter().any(|k| k == kind)
    }

    /// Details of this device's alerts of one kind, oldest first.
    pub fn alert_details(&self, kind: &str) -> Vec<String> {
        self.json(&["alerts"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["kind"] == kind)
            .map(|a| a["detail"].as_str().unwrap().to_owned())
            .collect()
    }

    /// This device's row of `devices --json` (id, status, link code).
    pub fn this_device(&self) -> Value {
        self.json(&["devices"])
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["this_device"] == true)
            .unwrap()
            .clone()
    }

    /// This device's id.
    pub fn device_id(&self) -> String {
        self.this_device()["device"].as_str().unwrap().to_owned()
    }

    /// `user/device`, as MLS credentials and the hooks name a device.
    pub fn address(&self) -> String {
        format!("{}/{}", self.user, self.device_id())
    }

    /// One conversation as `conversation list --json` shows it.
    pub fn conversation(&self, id: &str) -> Value {
        self.conversations()
            .into_iter()
            .find(|c| c["id"] == id)
            .unwrap_or_else(|| panic!("{} has no conversation {id}", self.user))
    }

    /// The devices of `user` (a short name) that this device holds as
    /// members of conversation `id`.
    pub fn members_of(&self, id: &str, user: &str) -> Value {
        self.conversation(id)["members"][addr(user)].clone()
    }

    /// A copy of this device's home as it is now (what a thief who copied
    /// the disk would hold), driven like any device.
    pub fn copy(&self) -> Device {
        let home = self
            .home
            .with_file_name(format!("copy-{}", rand::random::<u32>()));
        copy_dir(&self.home, &home);
        Device {
            home,
            user: self.user.clone(),
            link_code: None,
        }
    }

    /// The alert reports a desk's home holds, one JSON object per line.
    pub fn desk_reports(&self) -> Vec<Value> {
        self.ok(&["alerts", "--desk", "--json"])
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect()
    }

    /// Subjects of the inbox, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.inbox()
            .iter()
            .map(|l| l["subject"].as_str().unwrap().to_owned())
            .collect()
    }
}

/// Asserts `dev`'s first letter is a stub withheld for a reason that
/// mentions `why`, showing none of `content` (in `read`, text and JSON).
#[track_caller]
pub fn assert_withheld(dev: &Device, why: &str, content: &[&str]) {
    let id = dev.inbox()[0]["id"].to_string();
    let letter = dev.json(&["read", &id]);
    let reason = letter["withheld"].as_str().unwrap_or_default();
    assert!(reason.contains(why), "{letter}");
    let text = dev.ok(&["read", &id]);
    assert!(text.contains("withheld"), "{text}");
    for canary in content {
        assert!(
            !text.contains(canary) && !letter.to_string().contains(canary),
            "{canary}: {text}"
        );
    }
    assert!(letter["attachments"].as_array().unwrap().is_empty());
}

/// Asserts every device holds `conv` at one epoch authenticator: no fork.
#[track_caller]
pub fn assert_no_fork(devices: &[&Device], conv: &str) {
    let auth: Vec<Value> = devices
        .iter()
        .map(|d| d.conversation(conv)["authenticator"].clone())
        .collect();
    assert!(auth.iter().all(|a| a == &auth[0]), "fork: {auth:?}");
}

/// `send --conversation CONV --subject S --body B`: the arguments, for a
/// caller that adds its own (a marking).
pub fn send_in_args<'a>(conv: &'a str, subject: &'a str, body: &'a str) -> Vec<&'a str> {
    vec![
        "send",
        "--conversation",
        conv,
        "--subject",
        subject,
        "--body",
        body,
    ]
}

/// A command's stderr, as text (for assertion messages).
pub fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command succeeded; its stderr says why not.
#[track_caller]
pub fn assert_ok(out: &Output) {
    assert!(out.status.success(), "{}", stderr(out));
}

/// Asserts the command failed and its stderr says `why`.
#[track_caller]
pub fn assert_refused(out: &Output, why: &str) {
    assert!(!out.status.success(), "not refused ({why})");
    assert!(stderr(out).contains(why), "{}", stderr(out));
}

/// Whether `needle` stands anywhere in `haystack` (the plaintext scans).
pub fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Full address of a test user.
pub fn addr(user: &str) -> String {
    format!("{user}@{DOMAIN}")
}

/// Every file under `dir`, recursively.
pub fn files(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_dir() {
            out.extend(files(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// Copies a flat directory (a device home).
pub fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, to.join(p.file_name().unwrap())).unwrap();
    }
}

impl Server {
    /// Calls a hook of the test-only `adversary` build with curl (the
    /// hooks take no token); returns its JSON answer.
    pub fn hook(&self, name: &str, body: Value) -> Value {
        let out = Command::new("curl")
            .args(["-sS", "--http1.1", "--fail-with-body", "--cacert"])
            .arg(self.ca())
            .args([
                "-H",
                "content-type: application/json",
                "-d",
                &body.to_string(),
            ])
            .arg(format!("{}/adversary/{name}", self.url))
            .output()
            .expect("curl");
        assert!(
            out.status.success(),
            "hook {name}: {} {}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).unwrap()
    }

    /// The entries waiting in a device's inbox, oldest first.
    pub fn pending(&self, device: &Device) -> Vec<Value> {
        let listing = self.hook("inbox", serde_json::json!({ "device": device.address() }));
        listing["entries"].as_array().unwrap().clone()
    }

    /// The audit key `valised init` printed (hex).
    pub fn audit_key(&self) -> String {
        self.init_output
            .lines()
            .find(|l| l.starts_with("audit key"))
            .and_then(|l| l.split_whitespace().last())
            .unwrap_or_else(|| panic!("no audit key in: {}", self.init_output))
            .to_owned()
    }

    /// The directory key `valised init` printed (the 64-hex-digit word on
    /// its line that mentions the directory).
    pub fn directory_key(&self) -> String {
        self.init_output
            .lines()
            .filter(|l| l.to_lowercase().contains("directory"))
            .flat_map(|l| l.split(|c: char| !c.is_ascii_hexdigit()))
            .find(|w| w.len() == 64)
            .unwrap_or_else(|| panic!("no directory key in: {}", self.init_output))
            .to_owned()
    }
}

/// Alice writes "one" to bob, who has a laptop and a phone the laptop
/// approved, and both of bob's devices sync (laptop first): alice, the
/// laptop, the phone and the conversation's id.
pub fn bob_on_laptop_and_phone(server: &Server) -> (Device, Device, Device, String) {
    let alice = server.device("alice");
    let laptop = server.device("bob");
    let phone = server.second_device("bob", &laptop);
    let conv = alice.start_conversation(&["bob"], "one", "to both");
    laptop.sync();
    phone.sync();
    (alice, laptop, phone, conv)
}

/// Alice, bob and carol enrolled; alice writes "hello" to carol, who reads
/// it: the three devices and the conversation's id.
pub fn alice_writes_to_carol(server: &Server) -> (Device, Device, Device, String) {
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let conv = alice.start_conversation(&["carol"], "hello", "hello");
    carol.sync();
    (alice, bob, carol, conv)
}

/// Syncs these devices round after round until a whole round changes
/// nothing: devices renew their keys on their own (after joining, or a
/// day on), which are commits the others must see.
pub fn settle(devices: &[&Device]) {
    for _ in 0..10 {
        let mut busy = false;
        for d in devices {
            let r = d.sync();
            for key in [
                "joined",
                "commits",
                "updated",
                "devices_added",
                "devices_removed",
                "rejoined",
            ] {
                busy |= r[key].as_u64().unwrap_or(0) > 0;
            }
        }
        if !busy {
            return;
        }
    }
    panic!("still busy after 10 rounds of syncs");
}

/// The intruder's hands on the server's delivery log
/// (`crates/server/src/store/migrations/0005_log.sql`): one row per
/// accepted message, read by devices through their memberships, or only
/// by the devices in `targets` for a targeted row. Rewriting a row's bytes
/// or sender, or deleting one, works on a live server; adding rows or
/// changing who is a member needs it stopped ([`Server::kill9`], then
/// [`Server::restart`]): its writer keeps the log's head and each
/// conversation's roster in memory.
pub mod log {
    use rusqlite::{Connection, OptionalExtension, params};

    /// Log row kinds.
    pub const COMMIT: i64 = 1;
    pub const APPLICATION: i64 = 3;

    /// The log's number for a user's (first) device, given one if it has none.
    pub fn device_num(db: &Connection, user: &str) -> i64 {
        let device: String = db
            .query_row(
                "SELECT device FROM devices WHERE user = ?1 ORDER BY number LIMIT 1",
                [user],
                |r| r.get(0),
            )
            .unwrap();
        num_of(db, user, &device)
    }

    /// The log's number for any device address (enrolled or not), given
    /// one if it has none.
    pub fn num_of(db: &Connection, user: &str, device: &str) -> i64 {
        db.execute(
            "INSERT INTO device_nums (user, device) SELECT ?1, ?2
             WHERE NOT EXISTS (SELECT 1 FROM device_nums WHERE user = ?1 AND device = ?2)",
            params![user, device],
        )
        .unwrap();
        db.query_row(
            "SELECT num FROM device_nums WHERE user = ?1 AND device = ?2",
            params![user, device],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// The log's number for a conversation (hex id).
    pub fn conv_num(db: &Connection, conv: &str) -> i64 {
        db.query_row(
            "SELECT num FROM conversations WHERE id = ?1",
            [hex::decode(conv).unwrap()],
            |r| r.get(0),
        )
        .unwrap()
    }

    /// A row of the log.
    pub struct Row {
        pub seq: i64,
        pub conv: i64,
        pub bytes: Vec<u8>,
    }

    /// The newest row of `kind` in a conversation (hex id), from `sender`
    /// (a user) if given.
    pub fn newest(db: &Connection, kind: i64, conv: &str, sender: Option<&str>) -> Option<Row> {
        db.query_row(
            "SELECT l.seq, l.conv, l.bytes FROM log l JOIN device_nums d ON d.num = l.sender
             WHERE l.kind = ?1 AND l.conv = ?2 AND (?3 IS NULL OR d.user = ?3)
             ORDER BY l.seq DESC LIMIT 1",
            params![kind, conv_num(db, conv), sender],
            |r| {
                Ok(Row {
                    seq: r.get(0)?,
                    conv: r.get(1)?,
                    bytes: r.get(2)?,
                })
            },
        )
        .optional()
        .unwrap()
    }

    /// Appends a row read by `to` only (a targeted row, as a Welcome is),
    /// at the head of the log. The server must be stopped.
    pub fn deliver(db: &Connection, to: i64, conv: i64, sender: i64, kind: i64, bytes: &[u8]) {
        let seq: i64 = db
            .query_row(
                "SELECT max(coalesce((SELECT seq FROM log_head), 0),
                            coalesce((SELECT max(seq) FROM log), 0)) + 1",
                [],
                |r| r.get(0),
            )
            .unwrap();
        let chain: [u8; 16] = rand::random();
        db.execute(
            "INSERT INTO log (seq, conv, kind, sender, targeted, bytes, ratchet_tree, at_ms, chain)
             VALUES (?1, ?2, ?3, ?4, 1, ?5, NULL, 0, ?6)",
            params![seq, conv, kind, sender, bytes, &chain[..]],
        )
        .unwrap();
        db.execute(
            "INSERT INTO targets (device, seq) VALUES (?1, ?2)",
            params![to, seq],
        )
        .unwrap();
        db.execute(
            "INSERT INTO log_head (only, seq, chain) VALUES (1, ?1, ?2)
             ON CONFLICT (only) DO UPDATE SET seq = excluded.seq, chain = excluded.chain",
            params![seq, &chain[..]],
        )
        .unwrap();
    }

    /// Letters `user` sent that the server accepted (rows may since have
    /// been collected; the ids of accepted letters stay).
    pub fn accepted_from(db: &Connection, user: &str) -> i64 {
        db.query_row(
            "SELECT count(*) FROM sent_ids s JOIN device_nums d ON d.num = s.sender
             WHERE d.user = ?1",
            [user],
            |r| r.get(0),
        )
        .unwrap()
    }
}

/// The audit log (issue 10), as its tests read and check it.
pub mod audit {
    use super::Server;
    use serde_json::Value;
    use std::path::Path;
    use std::process::{Command, Output};
    use valise_proto::audit::Entry;

    /// Waits past the next checkpoint (servers started with
    /// `--checkpoint-interval-secs 1` sign one every second).
    pub fn checkpointed() {
        std::thread::sleep(std::time::Duration::from_millis(1500));
    }

    /// `valised audit verify --data D --json`: passed, and the report
    /// (which says `ok` as the exit status does).
    pub fn verify(data: &Path) -> (bool, Value) {
        let out = Command::new(super::valised_bin())
            .args(["audit", "verify", "--json", "--data"])
            .arg(data)
            .output()
            .unwrap();
        let v: Value = serde_json::from_slice(&out.stdout)
            .unwrap_or_else(|_| panic!("{}", String::from_utf8_lossy(&out.stderr)));
        assert_eq!(v["ok"], out.status.success(), "{v}");
        (out.status.success(), v)
    }

    /// `valise audit-log SERVER --state FILE --json [--entries] [--key K]`.
    pub fn audit_log(server: &Server, state: &Path, walk: bool, key: Option<&str>) -> Output {
        let mut cmd = Command::new(super::valise_bin());
        cmd.args(["--json", "audit-log", &server.url, "--state"])
            .arg(state)
            .arg("--ca")
            .arg(server.ca());
        if walk {
            cmd.arg("--entries");
        }
        if let Some(k) = key {
            cmd.args(["--key", k]);
        }
        cmd.output().unwrap()
    }

    /// Every entry of the log as stored, decoded.
    pub fn entries(server: &Server) -> Vec<Entry> {
        let conn = server.db();
        let mut stmt = conn
            .prepare("SELECT bytes FROM audit_entries ORDER BY idx")
            .unwrap();
        stmt.query_map([], |r| r.get::<_, Vec<u8>>(0))
            .unwrap()
            .map(|b| Entry::decode(&b.unwrap()).unwrap())
            .collect()
    }
}

/// A loopback port free now (the kernel's pick), e.g. for
/// `--metrics-listen`.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// `GET /metrics` on a loopback port: the status line, the content type
/// and the body.
pub fn scrape_metrics(port: u16) -> (String, String, String) {
    use std::io::{Read as _, Write as _};
    let mut tcp = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
    tcp.write_all(b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = String::new();
    tcp.read_to_string(&mut answer).unwrap();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap();
    let status = head.lines().next().unwrap().to_owned();
    let content_type = head
        .lines()
        .find_map(|l| l.strip_prefix("content-type: "))
        .unwrap()
        .to_owned();
    (status, content_type, body.to_owned())
}
