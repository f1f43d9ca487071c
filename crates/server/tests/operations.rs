//! What an operator does with the `valised` binary: run it from a
//! configuration file, be told in one line what is wrong with one, and
//! print the server's public identity for auditors without a secret in it.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{DOMAIN, admin, init, valised};
use std::io::{BufRead as _, BufReader};
use std::path::Path;
use std::process::Stdio;

/// `valised ARGS`, which must fail: its one line of error.
fn refused(args: &[&str]) -> String {
    let out = valised().args(args).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "valised {args:?} did not fail");
    let stderr = String::from_utf8(out.stderr).unwrap();
    let lines: Vec<&str> = stderr.lines().collect();
    assert_eq!(lines.len(), 1, "not one line: {stderr}");
    lines[0].to_owned()
}

#[test]
fn runs_from_a_configuration_file_and_flags_override_it() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    init(&data);
    let config = tmp.path().join("valised.toml");
    // A relative data directory is the file's own directory's; the file's
    // listen address is taken over by the flag.
    std::fs::write(
        &config,
        "data = \"data\"\nlisten = \"192.0.2.1:1\"\nmetrics_listen = \"127.0.0.1:0\"\n\
         directory_interval_ms = 50\nsecurity_desk = \"soc@mfa.example\"\n",
    )
    .unwrap();
    let mut child = valised()
        .args(["run", "--listen", "127.0.0.1:0", "--config"])
        .arg(&config)
        .current_dir("/")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = Vec::new();
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let line = line.unwrap();
        let listening = line.starts_with("listening on");
        lines.push(line);
        if listening {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    // The flag's address, not the file's (which is not this host's).
    let said = |prefix: &str| lines.iter().any(|l| l.starts_with(prefix));
    assert!(said("listening on https://127.0.0.1:"), "{lines:?}");
    // The file's metrics listener.
    assert!(said("metrics on http://127.0.0.1:"), "{lines:?}");
    // The file's security desk, named as `admin set security-desk` does.
    use valise_server::store::Store as _;
    let store = valise_server::store::SqliteStore::open(&data.join("valised.db")).unwrap();
    assert_eq!(
        store.security_desk().unwrap().unwrap().as_str(),
        "soc@mfa.example"
    );
}

#[test]
fn a_wrong_configuration_is_one_line_naming_what_is_wrong() {
    let tmp = tempfile::tempdir().unwrap();
    let config = tmp.path().join("valised.toml");
    let path = config.to_str().unwrap();
    std::fs::write(&config, "data = \"data\"\n\nmax_send_per_second = 5\n").unwrap();
    let line = refused(&["run", "--config", path]);
    assert!(
        line.starts_with(&format!("valised: {path}, line 3: ")),
        "{line}"
    );
    assert!(line.contains("`max_send_per_second`"), "{line}");

    std::fs::write(&config, "listen = \"127.0.0.1:0\"\n").unwrap();
    assert_eq!(
        refused(&["run", "--config", path]),
        "valised: no data directory: give --data or `data` in the configuration file"
    );
    let line = refused(&[
        "run",
        "--data",
        "D",
        "--listen",
        "127.0.0.1:0",
        "--metrics-listen",
        "0.0.0.0:9464",
    ]);
    assert!(line.contains("not a loopback address"), "{line}");
}

/// The text of every secret file in the data directory, line by line.
fn secret_lines(data: &Path) -> Vec<String> {
    let files = [
        "keys/server.key",
        "keys/directory-root.key",
        "keys/directory-vrf.key",
        "tls/key.pem",
        "tls/ca.key",
    ];
    files
        .iter()
        .flat_map(|f| {
            std::fs::read_to_string(data.join(f))
                .unwrap()
                .lines()
                .filter(|l| !l.starts_with("-----") && !l.trim().is_empty())
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect()
}

#[test]
fn info_prints_the_public_keys_and_the_ca_and_never_a_secret() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let directory_key = init(&data);
    let text = admin(&data, &["info"]);
    let json: serde_json::Value = serde_json::from_str(&admin(&data, &["info", "--json"])).unwrap();

    assert!(text.starts_with(&format!("domain: {DOMAIN}\n")), "{text}");
    assert!(text.contains(&directory_key.to_string()), "{text}");
    assert_eq!(json["domain"], DOMAIN);
    let names: Vec<&str> = json["keys"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["server", "directory", "directory_vrf", "audit"]);
    assert_eq!(json["keys"][1]["hex"], directory_key.to_string());
    let ca = std::fs::read_to_string(data.join("tls/ca.pem")).unwrap();
    assert_eq!(json["ca"]["pem"], ca);
    assert!(text.contains(&ca));
    assert_eq!(json["ca"]["sha256"].as_str().unwrap().len(), 64);

    let secrets = secret_lines(&data);
    assert!(secrets.len() >= 5, "{secrets:?}");
    for secret in &secrets {
        assert!(!text.contains(secret.as_str()), "a secret in the text");
        assert!(
            !json.to_string().contains(secret.as_str()),
            "a secret in the JSON"
        );
    }
}
