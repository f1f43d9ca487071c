//! The security officer of issue 11: an authority key on their own
//! machine, the attestations it signs offline, and a server that carries
//! them (shared by the markings and ceiling stories).
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::{Server, addr};
use serde_json::Value;
use std::path::PathBuf;
use std::process::Command;
use valise_proto::attestation::{Accreditation, AuthoritySecret};
use valise_proto::{Label, UserId};

/// The environment of a client modified to skip the marking checks
/// (accreditation, ceiling): a failpoint only test builds honour.
pub const MODIFIED: &[(&str, &str)] = &[("VALISE_FAILPOINT", "skip_marking_check")];

/// The security officer, with an authority key on their own machine.
pub struct Officer {
    pub key: PathBuf,
    pub public: String,
    pub fingerprint: String,
}

impl Officer {
    pub fn new(dir: &std::path::Path, name: &str) -> Self {
        let key = dir.join(format!("{name}.key"));
        let v = offline(&["authority-key", "--out", key.to_str().unwrap()]);
        Self {
            key,
            public: v["public_key"].as_str().unwrap().to_owned(),
            fingerprint: v["fingerprint"].as_str().unwrap().to_owned(),
        }
    }

    /// `valise accredit`: the attestation file.
    pub fn accredit(&self, user: &str, marking: &str, device: Option<&str>) -> PathBuf {
        let out = self
            .key
            .with_file_name(format!("{user}-{}.cose", rand::random::<u32>()));
        let who = addr(user);
        let mut args = vec![
            "accredit",
            "--authority-key",
            self.key.to_str().unwrap(),
            &who,
            marking,
            "--until",
            "2099-12-31",
            "--out",
            out.to_str().unwrap(),
        ];
        if let Some(d) = device {
            args.extend(["--device", d]);
        }
        offline(&args);
        out
    }

    /// Accredits each of `users` (all their devices) for `marking` and
    /// publishes the attestations on `server`.
    pub fn accredit_all(&self, server: &Server, users: &[&str], marking: &str) {
        for user in users {
            publish(server, &self.accredit(user, marking, None));
        }
    }

    /// An attestation signed with this key, valid until `not_after_s`
    /// (what an officer signed long ago, for a replay).
    pub fn sign(&self, user: &str, marking: &str, not_after_s: i64) -> Vec<u8> {
        let text = std::fs::read_to_string(&self.key).unwrap();
        Accreditation {
            device: None,
            issued_at_s: not_after_s - 86_400,
            label: Label::parse(marking).unwrap(),
            not_after_s,
            user: UserId::parse(&addr(user)).unwrap(),
        }
        .sign(&AuthoritySecret::from_file_text(&text).unwrap())
        .unwrap()
    }
}

/// `valise <args>` with no home (the officer's offline commands).
pub fn offline(args: &[&str]) -> Value {
    let out = Command::new(super::valise_bin())
        .args(args)
        .arg("--json")
        .env_remove("VALISE_HOME")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "valise {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

/// A security officer "so" whose key lives in a fresh directory (kept
/// for the test's other files) and a server that names that key.
pub fn officer_and_server() -> (tempfile::TempDir, Officer, Server) {
    let dir = tempfile::tempdir().unwrap();
    let so = Officer::new(dir.path(), "so");
    let server = server_with(&so);
    (dir, so, server)
}

/// A server whose accreditation authority is `officer`'s key.
pub fn server_with(officer: &Officer) -> Server {
    let server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    server.admin(&["set", "accreditation-authority", &officer.public]);
    server
}

/// Publishes an attestation and waits for the epoch that carries it.
pub fn publish(server: &Server, file: &std::path::Path) {
    server.admin(&["publish-attestation", file.to_str().unwrap()]);
    wait_published(server);
}

pub fn wait_published(server: &Server) {
    for _ in 0..100 {
        let queued: i64 = server
            .db()
            .query_row("SELECT COUNT(*) FROM directory_pending", [], |r| r.get(0))
            .unwrap();
        if queued == 0 {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("the directory did not publish");
}
