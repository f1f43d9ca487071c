//! One caller floods what costs the server most, against the real
//! `valised` over real TLS (G4, I8): before authentication (challenges,
//! enrolment, directory audits) nothing it does is expensive or unbounded,
//! and after it (key-package uploads) its allowance is its own; everyone
//! else is served meanwhile.
// A test's helpers may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Api, DOMAIN, Device, Server, admin, bytes, expect_problem, init, run_with};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::Duration;
use valise_directory::SignedRoot;
use valise_proto::ErrorCode;
use valise_proto::api::{ChallengeResponse, DirectoryRoot, KeyPackageStock, auth_signed_content};
use valise_proto::limits::{MAX_AUDIT_SPAN, MAX_KEY_PACKAGES_PER_UPLOAD};

fn start(data: &Path, extra: &[&str]) -> Server {
    init(data);
    run_with(data, extra)
}

fn who(d: &Device) -> serde_json::Value {
    serde_json::json!({
        "user": d.addr.user.as_str(),
        "device": d.addr.device.to_string(),
    })
}

/// Concurrent flooders, and the challenges they ask for at least.
const FLOODERS: usize = 8;
const FLOOD: usize = 800;

/// Anyone may ask for challenges for any enrolled device: a flood of them
/// for Alice's device is answered (asking is never refused), holds at most
/// a few of hers (the oldest are displaced), and blocks nobody's login:
/// Bob logs in during the flood, and Alice after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_flood_for_one_device_blocks_nobody() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data, &[]);
    let api = Arc::new(Api::new(&data, &server));
    let (alice, bob) = (
        Device::new("alice@mfa.example", 1),
        Device::new("bob@mfa.example", 1),
    );
    api.enroll(&data, &alice, false).await;
    api.enroll(&data, &bob, false).await;
    let first: ChallengeResponse = api.post("/v1/auth/challenge", who(&alice)).await;

    let (asked, stop) = (
        Arc::new(AtomicUsize::new(0)),
        Arc::new(AtomicBool::new(false)),
    );
    let mut flood = tokio::task::JoinSet::new();
    for _ in 0..FLOODERS {
        let (api, body) = (api.clone(), who(&alice));
        let (asked, stop) = (asked.clone(), stop.clone());
        flood.spawn(async move {
            while !stop.load(Ordering::Relaxed) {
                let _: ChallengeResponse = api.post("/v1/auth/challenge", body.clone()).await;
                asked.fetch_add(1, Ordering::Relaxed);
            }
        });
    }
    let flooded = |n: usize| {
        let asked = asked.clone();
        async move {
            while asked.load(Ordering::Relaxed) < n {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        }
    };
    flooded(FLOOD / 4).await;
    let before = asked.load(Ordering::Relaxed);
    for _ in 0..3 {
        api.login(&bob).await;
    }
    assert!(asked.load(Ordering::Relaxed) > before, "the flood stopped");
    flooded(FLOOD).await;
    stop.store(true, Ordering::Relaxed);
    flood.join_all().await;

    // The challenge Alice's device asked for before the flood was displaced.
    let signed = auth_signed_content(DOMAIN, &alice.addr, first.challenge.as_slice());
    let mut answer = who(&alice);
    answer["challenge"] = B64.encode(first.challenge.as_slice()).into();
    answer["signature"] = B64.encode(alice.sign(&signed)).into();
    let r = api.send("/v1/auth/token", None, &answer).await;
    expect_problem(r, ErrorCode::Unauthorized, "a displaced challenge").await;
    // Asking again works, for her and for Bob.
    api.login(&alice).await;
    api.login(&bob).await;
}

/// Enrolment checks the invite before it verifies any key package (costly
/// post-quantum keys): without a valid invite, 200 unparsable packages are
/// refused as `invalid_invite`, not as bad packages. With one, bad packages
/// are refused and the invite is not spent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn enrolment_checks_the_invite_before_the_key_packages() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data, &[]);
    let api = Api::new(&data, &server);
    let alice = Device::new("alice@mfa.example", 1);
    let enrol = |code: &str, key_packages: Vec<String>, last_resort: String| {
        let mut body = who(&alice);
        body["code"] = code.into();
        body["signature_key"] = B64.encode(alice.signer.public()).into();
        body["key_packages"] = key_packages.into();
        body["last_resort"] = last_resort.into();
        body
    };
    let garbage = || B64.encode([0xa5; 600]);
    let flood = vec![garbage(); MAX_KEY_PACKAGES_PER_UPLOAD];

    let r = api
        .send(
            "/v1/enroll",
            None,
            &enrol("12345", flood.clone(), garbage()),
        )
        .await;
    expect_problem(r, ErrorCode::InvalidInvite, "no invite, bad packages").await;

    let code = admin(&data, &["invite", "alice@mfa.example"]);
    let code = code.trim();
    let r = api
        .send("/v1/enroll", None, &enrol(code, flood, garbage()))
        .await;
    let status = r.status();
    assert!(status.is_client_error(), "{status}");
    assert_ne!(status.as_u16(), 401, "the invite was valid");

    let good = B64.encode(bytes(&alice.key_package(false)));
    let last_resort = B64.encode(bytes(&alice.key_package(true)));
    let _: serde_json::Value = api
        .post("/v1/enroll", enrol(code, vec![good], last_resort))
        .await;
}

/// Directory audits are public and each is proof work: one spanning more
/// than `MAX_AUDIT_SPAN` epochs is refused, and past its allowance an
/// address without a token is refused `rate_limited`, while another
/// address, and a device with its token, are still answered.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn audits_are_capped_in_span_and_rate_limited() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data, &["--max-audits-per-minute", "3"]);
    let api = Api::new(&data, &server);
    let alice = Device::new("alice@mfa.example", 1);
    api.enroll(&data, &alice, false).await;
    let token = api.login(&alice).await;
    let root: DirectoryRoot = api.get_json("/v1/directory/root", None).await;
    let epoch = SignedRoot::from_bytes(root.root.as_slice())
        .unwrap()
        .epoch();
    assert!(epoch >= 1);
    let audit = format!("/v1/directory/audit?from={}&to={epoch}", epoch - 1);

    let too_wide = format!("/v1/directory/audit?from=0&to={}", MAX_AUDIT_SPAN + 1);
    let r = api.get(&too_wide, None).await;
    expect_problem(r, ErrorCode::BadRequest, "an audit too wide").await;
    for _ in 0..2 {
        let r = api.get(&audit, None).await;
        assert!(r.status().is_success(), "{}", r.status());
    }
    let r = api.get(&audit, None).await;
    expect_problem(r, ErrorCode::RateLimited, "one audit too many").await;

    let elsewhere = Api::from_address(&data, &server, IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2)));
    let r = elsewhere.get(&audit, None).await;
    assert!(r.status().is_success(), "another address: {}", r.status());
    let r = api.get(&audit, Some(&token)).await;
    assert!(r.status().is_success(), "a device: {}", r.status());
}

/// Key packages are verified one by one: past its allowance (one full
/// upload at once, then a few a minute) a device's uploads are refused
/// `rate_limited` before any is verified; reading its stock still works,
/// and another device uploads as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_package_uploads_are_rate_limited_per_device() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let server = start(&data, &["--max-key-packages-per-minute", "6"]);
    let api = Api::new(&data, &server);
    let (alice, bob) = (
        Device::new("alice@mfa.example", 1),
        Device::new("bob@mfa.example", 1),
    );
    api.enroll(&data, &alice, false).await;
    api.enroll(&data, &bob, false).await;
    let (alice_token, bob_token) = (api.login(&alice).await, api.login(&bob).await);
    let upload = |d: &Device, n: usize| {
        let one_time: Vec<String> = (0..n)
            .map(|_| B64.encode(bytes(&d.key_package(false))))
            .collect();
        serde_json::json!({
            "one_time": one_time,
            "last_resort": B64.encode(bytes(&d.key_package(true))),
        })
    };
    let put = |token: &str, body: &serde_json::Value| {
        api.c
            .put(api.url("/v1/devices/self/key-packages"))
            .bearer_auth(token)
            .json(body)
            .send()
    };

    let full = upload(&alice, MAX_KEY_PACKAGES_PER_UPLOAD);
    let r = put(&alice_token, &full).await.unwrap();
    assert!(r.status().is_success(), "a full upload: {}", r.status());
    let r = put(&alice_token, &upload(&alice, 1)).await.unwrap();
    expect_problem(r, ErrorCode::RateLimited, "one upload too many").await;
    let r = put(&alice_token, &serde_json::json!({ "one_time": [] }))
        .await
        .unwrap();
    let stock: KeyPackageStock = r.json().await.unwrap();
    assert_eq!(stock.one_time, 1 + MAX_KEY_PACKAGES_PER_UPLOAD as u64);

    let r = put(&bob_token, &upload(&bob, 5)).await.unwrap();
    assert!(r.status().is_success(), "Bob: {}", r.status());
}
