//! The key directory through the real `valised` binary: leftovers published
//! at start, an enrolment answered with the epoch that publishes it, the
//! root, lookup, history and audit endpoints verified with the client-side
//! checks; and the `adversary` hooks, present only in a build with the
//! feature (`cargo test -p valise-server --features adversary`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Device, bytes, client, expect_problem, run, valised};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::path::Path;
use std::time::Duration;
use valise_directory::{
    DirectoryKey, SignedRoot, VerifiedRoot, verify_audit, verify_history, verify_lookup,
    verify_root,
};
use valise_proto::api::{DirectoryAudit, DirectoryProof, DirectoryRoot, EnrollResponse};
use valise_proto::{DeviceAddress, DeviceId, ErrorCode, UserId};
use valise_server::store::{Enrollment, SqliteStore, Store};

/// `valised init`; returns the directory key it printed.
fn init(data: &Path) -> DirectoryKey {
    let out = valised()
        .args(["init", "--domain", "mfa.example", "--data"])
        .arg(data)
        .output()
        .unwrap();
    assert!(out.status.success());
    let stdout = String::from_utf8(out.stdout).unwrap();
    let hex = stdout
        .lines()
        .find_map(|l| l.strip_prefix("directory key (Ed25519, public): "))
        .unwrap_or_else(|| panic!("no directory key in {stdout:?}"));
    DirectoryKey::try_from(hex.to_owned()).unwrap()
}

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// A device put straight into the database, with a token.
fn device_in_db(data: &Path, who: &str, id: u8, key: Vec<u8>) -> (DeviceAddress, String) {
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    let device = DeviceAddress::new(user(who), DeviceId::from_bytes([id; 8]));
    let code = [id; 32];
    store
        .create_invite(code, &device.user, 0, i64::MAX)
        .unwrap();
    store
        .enroll(&Enrollment {
            code_hash: code,
            device: device.clone(),
            signature_key: key,
            key_packages: vec![vec![1]],
            last_resort: vec![2],
            now_ms: 1,
        })
        .unwrap();
    let token = format!("directory-test-token-{id}");
    store
        .create_token(valise_server::auth::token_hash(&token), &device, i64::MAX)
        .unwrap();
    (device, token)
}

struct Api {
    c: reqwest::Client,
    port: u16,
}

impl Api {
    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    async fn get(&self, path: &str, token: Option<&str>) -> reqwest::Response {
        let mut rb = self.c.get(self.url(path));
        if let Some(t) = token {
            rb = rb.bearer_auth(t);
        }
        rb.send().await.unwrap()
    }

    async fn get_json<T: serde::de::DeserializeOwned>(&self, path: &str, token: Option<&str>) -> T {
        let r = self.get(path, token).await;
        assert!(r.status().is_success(), "{path}: {}", r.status());
        r.json().await.unwrap()
    }

    async fn post<T: serde::de::DeserializeOwned>(&self, path: &str, body: serde_json::Value) -> T {
        let r = self
            .c
            .post(self.url(path))
            .json(&body)
            .send()
            .await
            .unwrap();
        let status = r.status();
        let bytes = r.bytes().await.unwrap();
        assert!(status.is_success(), "{path}: {status} {bytes:?}");
        serde_json::from_slice(&bytes).unwrap()
    }

    async fn root(&self, key: &DirectoryKey, token: &str) -> VerifiedRoot {
        let r: DirectoryRoot = self.get_json("/v1/directory/root", Some(token)).await;
        verify_root(&SignedRoot::from_bytes(r.root.as_slice()).unwrap(), key).unwrap()
    }

    async fn proof(&self, what: &str, u: &str, token: &str) -> (SignedRoot, Vec<u8>) {
        let p: DirectoryProof = self
            .get_json(&format!("/v1/directory/{what}/{u}"), Some(token))
            .await;
        (
            SignedRoot::from_bytes(p.root.as_slice()).unwrap(),
            p.proof.into_vec(),
        )
    }
}

/// A key package as base64 for a JSON body.
fn kp64(d: &Device, last_resort: bool) -> String {
    B64.encode(bytes(&d.key_package(last_resort)))
}

/// Enrols `d` over HTTP with a fresh invite.
async fn enroll(api: &Api, data: &Path, d: &Device) -> EnrollResponse {
    let code = format!("invite-{}", d.addr);
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    store
        .create_invite(
            valise_server::invite::hash(&code),
            &d.addr.user,
            0,
            i64::MAX,
        )
        .unwrap();
    api.post(
        "/v1/enroll",
        serde_json::json!({
            "user": d.addr.user.as_str(),
            "code": code,
            "device": d.addr.device.to_string(),
            "signature_key": B64.encode(d.signer.public()),
            "key_packages": [kp64(d, false)],
            "last_resort": kp64(d, true),
        }),
    )
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_endpoints_publish_prove_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    // Enrolled while the server is down: queued, published at start.
    let (alice, token) = device_in_db(&data, "alice@mfa.example", 1, vec![1; 32]);
    let server = run(&data);
    let api = Api {
        c: client(&data),
        port: server.port,
    };
    let tok = Some(token.as_str());

    let mut r1 = api.root(&key, &token).await;
    for _ in 0..100 {
        if r1.epoch() >= 1 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        r1 = api.root(&key, &token).await;
    }
    assert_eq!(r1.epoch(), 1, "leftover enrolment published at start");

    let (root, proof) = api.proof("lookup", "alice@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    let list = verify_lookup(&root, &alice.user, &proof).unwrap();
    assert_eq!(list.devices.active_key(&alice.device), Some(&[1u8; 32][..]));

    // Unknown users are 404; the token is required.
    let r = api.get("/v1/directory/lookup/bob@mfa.example", tok).await;
    expect_problem(r, ErrorCode::NotFound, "unknown lookup").await;
    let r = api.get("/v1/directory/history/bob@mfa.example", tok).await;
    expect_problem(r, ErrorCode::NotFound, "unknown history").await;
    for path in [
        "/v1/directory/lookup/alice@mfa.example",
        "/v1/directory/history/alice@mfa.example",
    ] {
        let r = api.get(path, None).await;
        expect_problem(r, ErrorCode::Unauthorized, path).await;
    }
    // The root is public (auditors have no account).
    let r = api.get("/v1/directory/root", None).await;
    assert!(r.status().is_success());

    // An enrolment is answered with the epoch that publishes the device.
    let bob = Device::new("bob@mfa.example", 2);
    let resp = enroll(&api, &data, &bob).await;
    assert_eq!(resp.directory_key.as_slice(), &key.0[..]);
    let r2 = verify_root(&SignedRoot::from_bytes(resp.root.as_slice()).unwrap(), &key).unwrap();
    assert_eq!(r2.epoch(), 2);
    let (root, proof) = api.proof("lookup", "bob@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    let list = verify_lookup(&root, &bob.addr.user, &proof).unwrap();
    assert_eq!(
        list.devices.active_key(&bob.addr.device),
        Some(bob.signer.public())
    );
    let (root, proof) = api.proof("history", "bob@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    let versions = verify_history(&root, &bob.addr.user, &proof).unwrap();
    assert_eq!(versions.len(), 1);
    assert_eq!(versions[0].epoch, 2);

    // Audit: public, both signed roots, an append-only proof that verifies.
    let a: DirectoryAudit = api.get_json("/v1/directory/audit?from=0&to=2", None).await;
    let from = verify_root(&SignedRoot::from_bytes(a.from.as_slice()).unwrap(), &key).unwrap();
    let to = verify_root(&SignedRoot::from_bytes(a.to.as_slice()).unwrap(), &key).unwrap();
    assert_eq!((from.epoch(), to.epoch()), (0, 2));
    assert_eq!(to.root_hash(), r2.root_hash());
    verify_audit(&from, &to, a.proof.as_slice()).await.unwrap();
    let a: DirectoryAudit = api.get_json("/v1/directory/audit?from=1&to=2", tok).await;
    let from = verify_root(&SignedRoot::from_bytes(a.from.as_slice()).unwrap(), &key).unwrap();
    assert_eq!(from.root_hash(), r1.root_hash());
    let to = verify_root(&SignedRoot::from_bytes(a.to.as_slice()).unwrap(), &key).unwrap();
    verify_audit(&from, &to, a.proof.as_slice()).await.unwrap();

    for (q, code) in [
        ("from=2&to=1", ErrorCode::BadRequest),
        ("from=1&to=1", ErrorCode::BadRequest),
        ("from=0&to=1001", ErrorCode::BadRequest),
        ("from=0&to=3", ErrorCode::NotFound),
        ("from=100&to=200", ErrorCode::NotFound),
    ] {
        let r = api.get(&format!("/v1/directory/audit?{q}"), None).await;
        expect_problem(r, code, q).await;
    }

    // A restart keeps everything: same key, same epochs, nothing re-queued.
    drop(server);
    let server = run(&data);
    let api = Api {
        c: client(&data),
        port: server.port,
    };
    tokio::time::sleep(Duration::from_millis(200)).await;
    let r = api.root(&key, &token).await;
    assert_eq!((r.epoch(), r.root_hash()), (2, r2.root_hash()));
}

/// Without the feature, the adversary's routes do not exist.
#[cfg(not(feature = "adversary"))]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversary_routes_are_absent_without_the_feature() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    init(&data);
    let server = run(&data);
    let api = Api {
        c: client(&data),
        port: server.port,
    };
    for path in [
        "/adversary/serve-key",
        "/adversary/rogue-device",
        "/adversary/fork-root",
        "/adversary/reset",
    ] {
        let r = api
            .c
            .post(api.url(path))
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        expect_problem(r, ErrorCode::NotFound, path).await;
    }
}

#[cfg(feature = "adversary")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn adversary_hooks_lie_as_asked() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    // Published at start, in epoch 1.
    let (_, token) = device_in_db(&data, "carol@mfa.example", 3, vec![3; 32]);
    let (_, dave_token) = device_in_db(&data, "dave@mfa.example", 4, vec![4; 32]);
    let server = run(&data);
    let api = Api {
        c: client(&data),
        port: server.port,
    };
    while api.root(&key, &token).await.epoch() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alice = Device::new("alice@mfa.example", 1);
    let bob = Device::new("bob@mfa.example", 2);
    enroll(&api, &data, &alice).await;
    let resp = enroll(&api, &data, &bob).await;
    assert_eq!(
        SignedRoot::from_bytes(resp.root.as_slice())
            .unwrap()
            .epoch(),
        3
    );

    // A3: a key package for Bob that is not in the directory.
    let mallory = Device::new("bob@mfa.example", 9);
    let fake = kp64(&mallory, false);
    let _: serde_json::Value = api
        .post(
            "/adversary/serve-key",
            serde_json::json!({"user": "bob@mfa.example", "device": mallory.addr.device.to_string(), "key_package": fake}),
        )
        .await;
    let claim: serde_json::Value = {
        let r = api
            .c
            .post(api.url("/v1/users/bob@mfa.example/key-packages/claim"))
            .bearer_auth(&token)
            .json(&serde_json::json!({}))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success());
        r.json().await.unwrap()
    };
    assert_eq!(claim["key_packages"][0]["key_package"], fake.as_str());
    assert_eq!(claim["key_packages"].as_array().unwrap().len(), 1);

    // A4/A6: a rogue device really published for Alice, removed next epoch.
    let res: serde_json::Value = api
        .post(
            "/adversary/rogue-device",
            serde_json::json!({
                "user": "alice@mfa.example",
                "device": "0909090909090909",
                "signature_key": B64.encode([9u8; 32]),
                "remove_next_epoch": true,
            }),
        )
        .await;
    assert!(res["removed"].is_string());
    let (root, proof) = api.proof("history", "alice@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    let versions = verify_history(&root, &alice.addr.user, &proof).unwrap();
    assert_eq!(versions.len(), 3);
    let rogue = DeviceId::from_bytes([9; 8]);
    assert!(versions[1].devices.active_key(&rogue).is_some());
    assert!(versions[2].devices.get(&rogue).is_none());
    let (root, proof) = api.proof("lookup", "alice@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    assert!(
        verify_lookup(&root, &alice.addr.user, &proof)
            .unwrap()
            .devices
            .get(&rogue)
            .is_none()
    );
    let now = api.root(&key, &token).await;
    assert_eq!(now.epoch(), 5);

    // A5 rollback: carol is shown epoch 1 from now on; dave is not.
    let res: serde_json::Value = api
        .post(
            "/adversary/fork-root",
            serde_json::json!({"device": "carol@mfa.example/0303030303030303", "mode": "rollback", "epoch": 1}),
        )
        .await;
    assert!(res["root"].is_string());
    assert_eq!(api.root(&key, &token).await.epoch(), 1);
    let (root, _) = api.proof("lookup", "bob@mfa.example", &token).await;
    assert_eq!(root.epoch(), 1);
    assert_eq!(api.root(&key, &dave_token).await.epoch(), 5);

    // A5 split view: dave sees a fork at the honest epoch where Bob has
    // Mallory's key; it verifies on its own, but not against the honest root.
    let _: serde_json::Value = api
        .post(
            "/adversary/fork-root",
            serde_json::json!({
                "device": "dave@mfa.example/0404040404040404",
                "mode": "fork",
                "user": "bob@mfa.example",
                "devices": [{"device": mallory.addr.device.to_string(), "signature_key": B64.encode(mallory.signer.public())}],
            }),
        )
        .await;
    let forked = api.root(&key, &dave_token).await;
    assert_eq!(forked.epoch(), now.epoch());
    assert_ne!(forked.root_hash(), now.root_hash());
    let (root, proof) = api.proof("lookup", "bob@mfa.example", &dave_token).await;
    let root = verify_root(&root, &key).unwrap();
    let list = verify_lookup(&root, &bob.addr.user, &proof).unwrap();
    assert_eq!(
        list.devices.active_key(&mallory.addr.device),
        Some(mallory.signer.public())
    );
    assert!(verify_lookup(&now, &bob.addr.user, &proof).is_err());

    // Reset: honest again.
    let _: serde_json::Value = api.post("/adversary/reset", serde_json::json!(null)).await;
    assert_eq!(
        api.root(&key, &dave_token).await.root_hash(),
        now.root_hash()
    );
    assert_eq!(api.root(&key, &token).await.epoch(), 5);
}
