//! The key directory through the real `valised` binary: leftovers published
//! at start, an enrolment answered with the epoch that publishes it, the
//! root, lookup, history and audit endpoints verified with the client-side
//! checks; and the `adversary` hooks, present only in a build with the
//! feature (`cargo test -p valise-server --features adversary`).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Api, Device, expect_problem, init, run};
use std::path::Path;
use std::time::Duration;
use valise_directory::{SignedRoot, verify_audit, verify_history, verify_lookup, verify_root};
use valise_proto::api::DirectoryAudit;
use valise_proto::{DeviceAddress, DeviceId, ErrorCode, UserId};
use valise_server::store::{Enrollment, NewKeyPackage, SqliteStore, Store};
#[cfg(feature = "adversary")]
use {base64::Engine as _, base64::engine::general_purpose::STANDARD as B64, common::bytes};

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

/// A device put straight into the database, with a token.
fn device_in_db(data: &Path, who: &str, id: u8, key: Vec<u8>) -> (DeviceAddress, String) {
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    let device = DeviceAddress::new(user(who), DeviceId::from_bytes([id; 8]));
    let code = [id; 32];
    store
        .create_invite(code, &device.user, 0, i64::MAX, false)
        .unwrap();
    let kp = |b: u8| NewKeyPackage {
        bytes: vec![b],
        not_after: u64::from(u32::MAX),
    };
    store
        .enroll(&Enrollment {
            code_hash: code,
            device: device.clone(),
            signature_key: key,
            key_packages: vec![kp(1)],
            last_resort: kp(2),
            now_ms: 1,
        })
        .unwrap();
    let token = format!("directory-test-token-{id}");
    store
        .create_token(valise_server::auth::token_hash(&token), &device, i64::MAX)
        .unwrap();
    (device, token)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn directory_endpoints_publish_prove_and_audit() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    // Enrolled while the server is down: queued, published at start.
    let (alice, token) = device_in_db(&data, "alice@mfa.example", 1, vec![1; 32]);
    let server = run(&data);
    let api = Api::new(&data, &server);
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
    assert_eq!(
        list.devices
            .get(&alice.device)
            .map(|e| e.signature_key.as_bytes()),
        Some(&[1u8; 32][..])
    );

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
    let resp = api.enroll(&data, &bob, false).await;
    assert_eq!(resp.directory_key.as_slice(), &key.0[..]);
    let r2 = verify_root(&SignedRoot::from_bytes(resp.root.as_slice()).unwrap(), &key).unwrap();
    assert_eq!(r2.epoch(), 2);
    let (root, proof) = api.proof("lookup", "bob@mfa.example", &token).await;
    let root = verify_root(&root, &key).unwrap();
    let list = verify_lookup(&root, &bob.addr.user, &proof).unwrap();
    assert_eq!(
        list.devices
            .get(&bob.addr.device)
            .map(|e| e.signature_key.as_bytes()),
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
    let api = Api::new(&data, &server);
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
    let api = Api::new(&data, &server);
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
    let api = Api::new(&data, &server);
    while api.root(&key, &token).await.epoch() < 1 {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let alice = Device::new("alice@mfa.example", 1);
    let bob = Device::new("bob@mfa.example", 2);
    api.enroll(&data, &alice, false).await;
    let resp = api.enroll(&data, &bob, false).await;
    assert_eq!(
        SignedRoot::from_bytes(resp.root.as_slice())
            .unwrap()
            .epoch(),
        3
    );

    // A3: a key package for Bob that is not in the directory.
    let mallory = Device::new("bob@mfa.example", 9);
    let fake = B64.encode(bytes(&mallory.key_package(false)));
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
    assert!(
        versions[1]
            .devices
            .get(&rogue)
            .map(|e| e.signature_key.as_bytes())
            .is_some()
    );
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
        list.devices
            .get(&mallory.addr.device)
            .map(|e| e.signature_key.as_bytes()),
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

/// A5 split view, as the conversation tests need it: the victim is shown a
/// copy of the honest directory that went on differently; its roots,
/// lookups and audits all come from the copy, so its own checks advance
/// consistently, while the honest directory's next epoch has another hash.
#[cfg(feature = "adversary")]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_split_view_goes_on_from_the_honest_history() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    let server = run(&data);
    let api = Api::new(&data, &server);
    let (alice, bob, carol) = (
        Device::new("alice@mfa.example", 1),
        Device::new("bob@mfa.example", 2),
        Device::new("carol@mfa.example", 3),
    );
    for d in [&alice, &bob, &carol] {
        api.enroll(&data, d, false).await;
    }
    let (ta, tc) = (api.login(&alice).await, api.login(&carol).await);
    let honest = api.root(&key, &ta).await;

    let mallory = Device::new("bob@mfa.example", 9);
    let res: serde_json::Value = api
        .post(
            "/adversary/fork-root",
            serde_json::json!({
                "device": carol.addr.to_string(),
                "mode": "split",
                "user": "bob@mfa.example",
                "devices": [{"device": mallory.addr.device.to_string(), "signature_key": B64.encode(mallory.signer.public())}],
            }),
        )
        .await;
    let shown = api.root(&key, &tc).await;
    let answered =
        SignedRoot::from_bytes(&B64.decode(res["root"].as_str().unwrap()).unwrap()).unwrap();
    assert_eq!(
        (answered.epoch(), answered.root_hash()),
        (shown.epoch(), shown.root_hash())
    );
    assert_eq!(shown.epoch(), honest.epoch() + 1);
    // Only carol is shown the copy; the honest directory goes on on its own.
    assert_eq!(api.root(&key, &ta).await.epoch(), honest.epoch());
    api.enroll(&data, &Device::new("dave@mfa.example", 4), false)
        .await;
    let next = api.root(&key, &ta).await;
    assert_eq!(next.epoch(), shown.epoch());
    assert_ne!(next.root_hash(), shown.root_hash());

    // Carol's own checks hold: bob has Mallory's key there, and the copy's
    // epoch only appended to the last honest root she saw.
    let (root, proof) = api.proof("lookup", "bob@mfa.example", &tc).await;
    let root = verify_root(&root, &key).unwrap();
    let list = verify_lookup(&root, &bob.addr.user, &proof).unwrap();
    assert!(list.devices.get(&mallory.addr.device).is_some());
    let path = format!(
        "/v1/directory/audit?from={}&to={}",
        honest.epoch(),
        shown.epoch()
    );
    let a: DirectoryAudit = api.get_json(&path, Some(&tc)).await;
    let from = verify_root(&SignedRoot::from_bytes(a.from.as_slice()).unwrap(), &key).unwrap();
    let to = verify_root(&SignedRoot::from_bytes(a.to.as_slice()).unwrap(), &key).unwrap();
    assert_eq!(from.root_hash(), honest.root_hash());
    assert_eq!(to.root_hash(), shown.root_hash());
    verify_audit(&from, &to, a.proof.as_slice()).await.unwrap();
    // Everyone else audits the honest epoch.
    let a: DirectoryAudit = api.get_json(&path, None).await;
    let to = verify_root(&SignedRoot::from_bytes(a.to.as_slice()).unwrap(), &key).unwrap();
    assert_eq!(to.root_hash(), next.root_hash());
    verify_audit(&from, &to, a.proof.as_slice()).await.unwrap();
}
