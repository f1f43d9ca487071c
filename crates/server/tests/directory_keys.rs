//! The key directory's secrets live in key files, never in `valised.db`
//! (a copy of the database must not sign roots): after `valised init`, and
//! after an older data directory, which kept them in the database, is
//! opened again.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{admin, client, init, run, valised};

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use valise_directory::{
    DirectoryKey, ROOT_SECRET_NAME, RootSigner, SignedRoot, VRF_SECRET_NAME, verify_root,
};
use valise_proto::api::DirectoryRoot;

fn key_files(data: &Path) -> [PathBuf; 2] {
    [
        data.join("keys/directory-root.key"),
        data.join("keys/directory-vrf.key"),
    ]
}

fn secrets_in_db(data: &Path) -> i64 {
    let conn = rusqlite::Connection::open(data.join("valised.db")).unwrap();
    conn.query_row("SELECT COUNT(*) FROM directory_secrets", [], |r| r.get(0))
        .unwrap()
}

/// Every byte the database keeps on disk (main file, WAL, shared memory).
fn database_bytes(data: &Path) -> Vec<u8> {
    ["valised.db", "valised.db-wal", "valised.db-shm"]
        .iter()
        .filter_map(|f| std::fs::read(data.join(f)).ok())
        .flatten()
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn served_root(data: &Path, key: &DirectoryKey) -> SignedRoot {
    let server = run(data);
    let r: DirectoryRoot = client(data)
        .get(format!(
            "https://127.0.0.1:{}/v1/directory/root",
            server.port
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let root = SignedRoot::from_bytes(r.root.as_slice()).unwrap();
    verify_root(&root, key).unwrap();
    root
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_keys_stay_out_of_the_database() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    let mut secrets = Vec::new();
    for f in key_files(&data) {
        let meta = std::fs::metadata(&f).unwrap();
        assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{}", f.display());
        let text = std::fs::read_to_string(&f).unwrap();
        let secret: [u8; 32] = hex::decode(text.trim()).unwrap().try_into().unwrap();
        secrets.push(secret);
    }
    assert_eq!(RootSigner::from_seed(&secrets[0]).public_key(), key);
    assert_eq!(secrets_in_db(&data), 0);
    let before = served_root(&data, &key).await;

    // A data directory from before: the keys in the database's secret
    // table, no key files.
    {
        let conn = rusqlite::Connection::open(data.join("valised.db")).unwrap();
        for (name, secret) in [
            (ROOT_SECRET_NAME, &secrets[0]),
            (VRF_SECRET_NAME, &secrets[1]),
        ] {
            conn.execute(
                "INSERT INTO directory_secrets (name, value) VALUES (?1, ?2)",
                rusqlite::params![name, &secret[..]],
            )
            .unwrap();
        }
    }
    for f in key_files(&data) {
        std::fs::remove_file(f).unwrap();
    }
    assert!(contains(&database_bytes(&data), &secrets[0]));

    // The next admin command (or run) moves them out.
    admin(&data, &["users"]);
    for (f, secret) in key_files(&data).iter().zip(&secrets) {
        assert_eq!(
            std::fs::read_to_string(f).unwrap().trim(),
            hex::encode(secret)
        );
    }
    assert_eq!(secrets_in_db(&data), 0);
    let on_disk = database_bytes(&data);
    for secret in &secrets {
        assert!(
            !contains(&on_disk, secret),
            "a secret is left in the database files"
        );
    }
    // Same keys: the server signs with the pinned key and the same VRF.
    let after = served_root(&data, &key).await;
    assert_eq!(after.vrf_public_key(), before.vrf_public_key());
    assert_eq!(after.root_hash(), before.root_hash());

    // Without the files and without the table, nothing starts.
    for f in key_files(&data) {
        std::fs::remove_file(f).unwrap();
    }
    let out = valised()
        .args(["admin", "--data"])
        .arg(&data)
        .arg("users")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("directory's keys are missing"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
