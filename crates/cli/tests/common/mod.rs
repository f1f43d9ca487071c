//! A real `valised` on a loopback port with real TLS and a real SQLite file,
//! and real devices driven through the real `valise` binary.
#![allow(dead_code)]
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use serde_json::Value;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

pub const DOMAIN: &str = "mfa.example";
pub const PASSPHRASE: &str = "correct horse battery staple";

pub fn valise_bin() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_valise"))
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
}

impl Server {
    pub fn start() -> Self {
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
        let (child, url) = Self::spawn(&data);
        Self { dir, url, child }
    }

    fn spawn(data: &Path) -> (Child, String) {
        let mut child = Command::new(valised_bin())
            .args(["run", "--listen", "127.0.0.1:0", "--data"])
            .arg(data)
            .arg("--log-file")
            .arg(data.join("valised.log"))
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let url = loop {
            let line = lines
                .next()
                .expect("valised exited before listening")
                .unwrap();
            if let Some(rest) = line.strip_prefix("listening on ") {
                break rest.trim().to_owned();
            }
        };
        (child, url)
    }

    pub fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    pub fn ca(&self) -> PathBuf {
        self.data().join("tls").join("ca.pem")
    }

    /// `valised admin invite`: a one-time enrolment code.
    pub fn invite(&self, user: &str) -> String {
        let out = Command::new(valised_bin())
            .args(["admin", "--data"])
            .arg(self.data())
            .args(["invite", &format!("{user}@{DOMAIN}")])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "invite: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap().trim().to_owned()
    }

    /// Enrols a new device for `user` (a new home each call).
    pub fn device(&self, user: &str) -> Device {
        let home = self
            .dir
            .path()
            .join(format!("home-{user}-{}", rand::random::<u32>()));
        let dev = Device {
            home,
            user: format!("{user}@{DOMAIN}"),
        };
        let code = self.invite(user);
        dev.ok(&[
            "enroll",
            &self.url,
            &dev.user,
            &code,
            "--ca",
            self.ca().to_str().unwrap(),
        ]);
        dev
    }

    /// Opens the server's database as the attacker who holds the disk would.
    pub fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(self.data().join("valised.db")).unwrap()
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
}

impl Device {
    pub fn run(&self, args: &[&str]) -> Output {
        Command::new(valise_bin())
            .arg("--home")
            .arg(&self.home)
            .args(args)
            .env("VALISE_PASSPHRASE", PASSPHRASE)
            .env_remove("VALISE_HOME")
            .output()
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

    pub fn send_in(&self, conv: &str, subject: &str, body: &str) -> Value {
        self.json(&[
            "send",
            "--conversation",
            conv,
            "--subject",
            subject,
            "--body",
            body,
        ])
    }

    pub fn read(&self, id: i64) -> Value {
        self.json(&["read", &id.to_string()])
    }

    /// Subjects of the inbox, in order.
    pub fn subjects(&self) -> Vec<String> {
        self.inbox()
            .iter()
            .map(|l| l["subject"].as_str().unwrap().to_owned())
            .collect()
    }
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
