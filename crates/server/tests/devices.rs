//! A user's devices through the real `valised` (issue 8): the first device
//! founds the identity and the next ones wait; an approved device approves
//! or revokes with its signature, checked with the clients' own rule; the
//! administrator revokes while the server runs, and resets an identity; a
//! pending device may not write, nor be added to a conversation; claims
//! hand out only approved devices' valid key packages.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::{Api, Device, Server, admin, bytes, expect_problem, init, run};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use openmls::prelude::{LeafNodeIndex, MlsGroup, OpenMlsProvider as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};
use valise_directory::identity::{DeviceStatus, approval_message, revocation_message};
use valise_directory::{DirectoryKey, Identity, SignedRoot, verify_root};
use valise_mls::{create_config, group_id};
use valise_proto::api::{ClaimResponse, DirectoryRoot, KeyPackageStock};
use valise_proto::{ConversationId, DeviceId, ErrorCode, UserId};
use valise_server::store::{NewKeyPackage, SqliteStore, Store};

/// A server on a fresh data directory.
struct World {
    _dir: tempfile::TempDir,
    data: PathBuf,
    key: DirectoryKey,
    _server: Server,
    api: Api,
}

fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("d");
    let key = init(&data);
    let server = run(&data);
    let api = Api::new(&data, &server);
    World {
        _dir: dir,
        data,
        key,
        _server: server,
        api,
    }
}

fn alice(n: u8) -> Device {
    Device::new("alice@mfa.example", n)
}

impl World {
    /// Enrols and logs `d` in; its token.
    async fn join(&self, d: &Device) -> String {
        self.api.enroll(&self.data, d, false).await;
        self.api.login(d).await
    }

    async fn status(&self, token: &str, d: &Device) -> Option<DeviceStatus> {
        self.api
            .devices_of(&self.key, token, &d.addr.user)
            .await
            .status(&d.addr.device)
    }

    async fn identity(&self, token: &str, user: &UserId) -> Identity {
        self.api.devices_of(&self.key, token, user).await.identity
    }

    /// `by`'s approval of `d` as number `number`.
    fn approval(
        &self,
        identity: &Identity,
        by: &Device,
        d: &Device,
        number: u64,
    ) -> serde_json::Value {
        let m = approval_message(
            &d.addr.user,
            identity,
            &d.addr.device,
            d.signer.public(),
            number,
        );
        serde_json::json!({"number": number, "signature": B64.encode(by.sign(&m))})
    }

    fn revocation(
        &self,
        identity: &Identity,
        by: &Device,
        d: &Device,
        at: u64,
    ) -> serde_json::Value {
        let m = revocation_message(
            &d.addr.user,
            identity,
            &d.addr.device,
            d.signer.public(),
            at,
        );
        serde_json::json!({"at": at, "signature": B64.encode(by.sign(&m))})
    }

    async fn approve(&self, token: &str, d: &Device, body: serde_json::Value) -> reqwest::Response {
        let path = format!("/v1/devices/{}/approval", d.addr.device);
        self.api.send(&path, Some(token), &body).await
    }

    async fn revoke(&self, token: &str, d: &Device, body: serde_json::Value) -> reqwest::Response {
        let path = format!("/v1/devices/{}/revocation", d.addr.device);
        self.api.send(&path, Some(token), &body).await
    }

    /// `by` (logged in with `token`) approves `d` as number `number`, and
    /// the server takes it.
    async fn approved(
        &self,
        token: &str,
        identity: &Identity,
        by: &Device,
        d: &Device,
        number: u64,
    ) {
        let r = self
            .approve(token, d, self.approval(identity, by, d, number))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// `by` (logged in with `token`) revokes `d` at `at`, and the server
    /// takes it.
    async fn revoked(&self, token: &str, identity: &Identity, by: &Device, d: &Device, at: u64) {
        let r = self
            .revoke(token, d, self.revocation(identity, by, d, at))
            .await;
        assert!(r.status().is_success(), "{}", r.status());
    }

    /// The statuses the server itself reports for `user`'s devices.
    async fn server_statuses(&self, token: &str, user: &str) -> Vec<String> {
        let list: valise_proto::api::DeviceList = self
            .api
            .get_json(&format!("/v1/users/{user}/devices"), Some(token))
            .await;
        list.devices.into_iter().map(|d| d.status).collect()
    }

    /// `valised admin users --json`: (number, status, generation) of each
    /// device.
    fn admin_devices(&self, user: &str) -> Vec<(u64, String, u64)> {
        let users: serde_json::Value =
            serde_json::from_str(&admin(&self.data, &["users", "--json"])).unwrap();
        let u = users
            .as_array()
            .unwrap()
            .iter()
            .find(|u| u["user"] == user)
            .unwrap();
        u["devices"]
            .as_array()
            .unwrap()
            .iter()
            .map(|d| {
                (
                    d["number"].as_u64().unwrap(),
                    d["status"].as_str().unwrap().to_owned(),
                    d["generation"].as_u64().unwrap(),
                )
            })
            .collect()
    }
}

/// Polls `check` every 50 ms for at most `within`; true once it holds.
async fn eventually<F, Fut>(within: Duration, mut check: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let start = Instant::now();
    while start.elapsed() < within {
        if check().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    false
}

async fn reads_its_inbox(api: &Api, token: &str) -> bool {
    api.get("/v1/inbox", Some(token))
        .await
        .status()
        .is_success()
}

async fn is_refused_as_revoked(api: &Api, token: &str) -> bool {
    let r = api.get("/v1/inbox", Some(token)).await;
    if r.status() != reqwest::StatusCode::UNAUTHORIZED {
        return false;
    }
    let p: valise_proto::Problem = r.json().await.unwrap();
    p.code == ErrorCode::DeviceRevoked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_second_device_waits_for_an_approval_signed_by_the_first() {
    let w = world();
    let (a1, a2, a3) = (alice(1), alice(2), alice(3));
    let t1 = w.join(&a1).await;
    // A pending device logs in, reads the directory and its inbox.
    let t2 = w.join(&a2).await;
    let t3 = w.join(&a3).await;
    assert_eq!(
        w.status(&t2, &a1).await,
        Some(DeviceStatus::Approved { by: None })
    );
    assert_eq!(w.status(&t2, &a2).await, Some(DeviceStatus::Pending));
    let identity = w.identity(&t1, &a1.addr.user).await;
    assert_eq!(identity.key.as_bytes(), a1.signer.public());
    assert_eq!(identity.generation, 1);
    assert_eq!(
        w.server_statuses(&t1, "alice@mfa.example").await,
        vec!["approved", "pending", "pending"]
    );
    assert_eq!(
        w.admin_devices("alice@mfa.example"),
        vec![
            (0, "approved".into(), 1),
            (1, "pending".into(), 1),
            (2, "pending".into(), 1)
        ]
    );
    assert!(reads_its_inbox(&w.api, &t2).await);

    // ...but writes to nobody.
    for path in [
        "/v1/conversations".to_owned(),
        format!("/v1/conversations/{}/commits", "00".repeat(16)),
        "/v1/letters".to_owned(),
    ] {
        let r = w.api.send(&path, Some(&t2), &serde_json::json!({})).await;
        expect_problem(r, ErrorCode::DevicePending, &path).await;
    }

    // Refused approvals.
    let good = w.approval(&identity, &a1, &a2, 1);
    let r = w
        .approve(&t3, &a2, w.approval(&identity, &a3, &a2, 1))
        .await;
    expect_problem(r, ErrorCode::Forbidden, "approved by a pending device").await;
    let stranger = alice(9);
    let r = w
        .approve(&t1, &stranger, w.approval(&identity, &a1, &stranger, 3))
        .await;
    expect_problem(r, ErrorCode::NotFound, "an unknown device").await;
    let r = w
        .approve(&t1, &a2, w.approval(&identity, &a1, &a2, 2))
        .await;
    expect_problem(r, ErrorCode::BadRequest, "another number").await;
    let mut forged = good.clone();
    forged["signature"] = B64.encode(a2.sign(b"not the approval")).into();
    let r = w.approve(&t1, &a2, forged).await;
    expect_problem(r, ErrorCode::BadRequest, "a bad signature").await;
    let mut wrong_number = w.approval(&identity, &a1, &a2, 2);
    wrong_number["number"] = 1.into();
    let r = w.approve(&t1, &a2, wrong_number).await;
    expect_problem(r, ErrorCode::BadRequest, "signed for another number").await;
    assert_eq!(w.status(&t1, &a2).await, Some(DeviceStatus::Pending));

    // A good one is published before the answer.
    let r = w.approve(&t1, &a2, good.clone()).await;
    assert!(r.status().is_success(), "{}", r.status());
    let root: DirectoryRoot = r.json().await.unwrap();
    let root = verify_root(
        &SignedRoot::from_bytes(root.root.as_slice()).unwrap(),
        &w.key,
    )
    .unwrap();
    assert!(w.api.root(&w.key, &t1).await.epoch() >= root.epoch());
    assert_eq!(
        w.status(&t3, &a2).await,
        Some(DeviceStatus::Approved {
            by: Some(a1.addr.device)
        })
    );
    assert_eq!(
        w.server_statuses(&t1, "alice@mfa.example").await,
        vec!["approved", "approved", "pending"]
    );
    let r = w.approve(&t1, &a2, good).await;
    expect_problem(r, ErrorCode::AlreadyExists, "approved twice").await;
    // An approved device writes: its bad body now reaches the MLS checks.
    let r = w
        .api
        .send(
            "/v1/conversations",
            Some(&t2),
            &serde_json::json!({"id": "00".repeat(16), "group_info": "AAEC", "ratchet_tree": ""}),
        )
        .await;
    expect_problem(r, ErrorCode::InvalidMls, "approved creator").await;
    // ...and approves in turn.
    w.approved(&t2, &identity, &a2, &a3, 2).await;
    assert_eq!(
        w.status(&t1, &a3).await,
        Some(DeviceStatus::Approved {
            by: Some(a2.addr.device)
        })
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoked_device_is_refused_at_once() {
    let w = world();
    let (a1, a2, a3) = (alice(1), alice(2), alice(3));
    let t1 = w.join(&a1).await;
    let t2 = w.join(&a2).await;
    let t3 = w.join(&a3).await;
    let identity = w.identity(&t1, &a1.addr.user).await;
    w.approved(&t1, &identity, &a1, &a2, 1).await;
    // The token is in the server's session cache.
    assert!(reads_its_inbox(&w.api, &t2).await);

    // `at` is the next device number (3); the signature must verify; only
    // an approved device revokes.
    let r = w
        .revoke(&t1, &a2, w.revocation(&identity, &a1, &a2, 2))
        .await;
    expect_problem(r, ErrorCode::BadRequest, "at is not the next number").await;
    let mut forged = w.revocation(&identity, &a1, &a2, 3);
    forged["signature"] = B64.encode(a1.sign(b"something else")).into();
    let r = w.revoke(&t1, &a2, forged).await;
    expect_problem(r, ErrorCode::BadRequest, "a bad signature").await;
    let r = w
        .revoke(&t3, &a2, w.revocation(&identity, &a3, &a2, 3))
        .await;
    expect_problem(r, ErrorCode::Forbidden, "revoked by a pending device").await;
    // Another user's device is not found.
    let bob = Device::new("bob@mfa.example", 7);
    let tb = w.join(&bob).await;
    let r = w
        .revoke(&tb, &a2, w.revocation(&identity, &bob, &a2, 3))
        .await;
    expect_problem(r, ErrorCode::NotFound, "another user's device").await;

    w.revoked(&t1, &identity, &a1, &a2, 3).await;
    // Refused at once, whatever it tries.
    assert!(is_refused_as_revoked(&w.api, &t2).await);
    let r = w
        .api
        .send(
            "/v1/auth/challenge",
            None,
            &serde_json::json!({"user": "alice@mfa.example", "device": a2.addr.device.to_string()}),
        )
        .await;
    expect_problem(r, ErrorCode::DeviceRevoked, "challenge of a revoked device").await;
    assert_eq!(
        w.status(&t1, &a2).await,
        Some(DeviceStatus::Revoked {
            by: Some(a1.addr.device)
        })
    );
    let r = w
        .revoke(&t1, &a2, w.revocation(&identity, &a1, &a2, 3))
        .await;
    expect_problem(r, ErrorCode::AlreadyExists, "revoked twice").await;
    // A device may revoke itself.
    w.revoked(&t1, &identity, &a1, &a1, 3).await;
    assert!(is_refused_as_revoked(&w.api, &t1).await);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_administrator_revokes_while_the_server_runs() {
    let w = world();
    let (a1, a2) = (alice(1), alice(2));
    let t1 = w.join(&a1).await;
    let t2 = w.join(&a2).await;
    assert!(reads_its_inbox(&w.api, &t2).await);
    let before = w.api.root(&w.key, &t1).await.epoch();

    let out = admin(
        &w.data,
        &["revoke", "alice@mfa.example", &a2.addr.device.to_string()],
    );
    assert!(out.contains("revoked"), "{out}");
    let refused = eventually(Duration::from_secs(3), || {
        is_refused_as_revoked(&w.api, &t2)
    })
    .await;
    assert!(refused, "the revoked device's token still works");
    let published = eventually(Duration::from_secs(5), || async {
        w.status(&t1, &a2).await == Some(DeviceStatus::Revoked { by: None })
    })
    .await;
    assert!(published, "the revocation was not published");
    assert!(w.api.root(&w.key, &t1).await.epoch() > before);
    assert_eq!(w.admin_devices("alice@mfa.example")[1].1, "revoked");
    // Unknown devices are refused by the command.
    let out = common::valised()
        .args(["admin", "--data"])
        .arg(&w.data)
        .args(["revoke", "alice@mfa.example", "0909090909090909"])
        .output()
        .unwrap();
    assert!(!out.status.success());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reset_invite_founds_generation_two_and_revokes_the_old_devices() {
    let w = world();
    let (a1, a2, a3) = (alice(1), alice(2), alice(3));
    let t1 = w.join(&a1).await;
    w.join(&a2).await;
    let bob = Device::new("bob@mfa.example", 7);
    let tb = w.join(&bob).await;

    w.api.enroll(&w.data, &a3, true).await;
    let identity = w.identity(&tb, &a3.addr.user).await;
    assert_eq!(identity.key.as_bytes(), a3.signer.public());
    assert_eq!(identity.generation, 2);
    let devices = w.api.devices_of(&w.key, &tb, &a3.addr.user).await;
    for old in [&a1, &a2] {
        assert_eq!(
            devices.status(&old.addr.device),
            Some(DeviceStatus::Revoked { by: None })
        );
    }
    assert_eq!(
        devices.status(&a3.addr.device),
        Some(DeviceStatus::Approved { by: None })
    );
    assert!(
        is_refused_as_revoked(&w.api, &t1).await,
        "an old device's token still works"
    );
    assert_eq!(
        w.admin_devices("alice@mfa.example"),
        vec![
            (0, "revoked".into(), 1),
            (1, "revoked".into(), 1),
            (2, "approved".into(), 2)
        ]
    );
    // Claims hand out only the new device's packages.
    let claimed: Vec<DeviceId> = claim(&w, &tb).await.into_iter().map(|k| k.0).collect();
    assert_eq!(claimed, vec![a3.addr.device]);
}

/// Bob claims Alice's packages: the device of each and the bytes.
async fn claim(w: &World, token: &str) -> Vec<(DeviceId, Vec<u8>, bool)> {
    let r = w
        .api
        .send(
            "/v1/users/alice@mfa.example/key-packages/claim",
            Some(token),
            &serde_json::json!({}),
        )
        .await;
    if r.status() == reqwest::StatusCode::NOT_FOUND {
        return Vec::new();
    }
    let c: ClaimResponse = r.json().await.unwrap();
    c.key_packages
        .into_iter()
        .map(|k| (k.device, k.key_package.into_vec(), k.last_resort))
        .collect()
}

async fn upload(
    w: &World,
    token: &str,
    d: &Device,
    n: usize,
    replace: bool,
) -> (Vec<Vec<u8>>, u64) {
    let kps: Vec<Vec<u8>> = (0..n).map(|_| bytes(&d.key_package(false))).collect();
    let body = serde_json::json!({
        "one_time": kps.iter().map(|k| B64.encode(k)).collect::<Vec<_>>(),
        "replace": replace,
    });
    let r = w
        .api
        .c
        .put(w.api.url("/v1/devices/self/key-packages"))
        .bearer_auth(token)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.status());
    let stock: KeyPackageStock = r.json().await.unwrap();
    (kps, stock.one_time)
}

fn add_expired(data: &Path, d: &Device, bytes: Vec<u8>) {
    let store = SqliteStore::open(&data.join("valised.db")).unwrap();
    store
        .add_key_packages(
            &d.addr,
            &[NewKeyPackage {
                bytes,
                not_after: valise_server::now_s() - 1,
            }],
            None,
            false,
        )
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn claims_skip_unapproved_devices_and_expired_packages() {
    let w = world();
    let (a1, a2, a3) = (alice(1), alice(2), alice(3));
    let t1 = w.join(&a1).await;
    let t2 = w.join(&a2).await;
    w.join(&a3).await;
    let bob = Device::new("bob@mfa.example", 7);
    let tb = w.join(&bob).await;
    let identity = w.identity(&t1, &a1.addr.user).await;
    w.approved(&t1, &identity, &a1, &a3, 2).await;
    w.revoked(&t1, &identity, &a1, &a3, 3).await;
    // A pending device restocks too, but nobody gets its packages.
    let (_, stock) = upload(&w, &t2, &a2, 2, false).await;
    assert_eq!(stock, 3);

    // a2 pending, a3 revoked: a1 only, its one-time package then its last-resort one.
    let first = claim(&w, &tb).await;
    assert_eq!(first.len(), 1);
    assert_eq!((first[0].0, first[0].2), (a1.addr.device, false));
    // An expired one-time package is skipped (and dropped), never handed out.
    add_expired(&w.data, &a1, vec![0xee]);
    let next = claim(&w, &tb).await;
    assert_eq!((next[0].0, next[0].2), (a1.addr.device, true));
    let (_, stock) = upload(&w, &t1, &a1, 0, false).await;
    assert_eq!(stock, 0, "the expired package is still stocked");

    // Replacing drops the unclaimed one-time packages first.
    let (_, stock) = upload(&w, &t1, &a1, 2, false).await;
    assert_eq!(stock, 2);
    let (fresh, stock) = upload(&w, &t1, &a1, 1, true).await;
    assert_eq!(stock, 1);
    let got = claim(&w, &tb).await;
    assert_eq!(got, vec![(a1.addr.device, fresh[0].clone(), false)]);
}

/// Alice's group as her client keeps it, and what the hub is sent.
struct Group {
    id: ConversationId,
    mls: MlsGroup,
}

fn tls(m: &impl openmls::prelude::tls_codec::Serialize) -> String {
    B64.encode(m.tls_serialize_detached().unwrap())
}

impl Group {
    /// Creates the group and registers it on the hub.
    async fn create(w: &World, token: &str, owner: &Device) -> Self {
        let id = ConversationId::from_bytes([7; 16]);
        let mls = MlsGroup::new_with_group_id(
            &owner.provider,
            &owner.signer,
            &create_config(None).unwrap(),
            group_id(&id),
            owner.cred(),
        )
        .unwrap();
        let g = Self { id, mls };
        let body = serde_json::json!({
            "id": id,
            "group_info": g.group_info(owner),
            "ratchet_tree": tls(&g.mls.export_ratchet_tree()),
        });
        let _: serde_json::Value = w.api.post_as("/v1/conversations", Some(token), body).await;
        g
    }

    fn group_info(&self, owner: &Device) -> String {
        tls(&self
            .mls
            .export_group_info(owner.provider.crypto(), &owner.signer, false)
            .unwrap())
    }

    /// Stages a commit adding `joiners` and removing the leaves `removed`
    /// as the client does, and submits it; the hub's answer. The commit is
    /// merged only if the hub took it.
    async fn commit(
        &mut self,
        w: &World,
        token: &str,
        owner: &Device,
        joiners: &[&Device],
        removed: &[u32],
    ) -> reqwest::Response {
        let p = &owner.provider;
        let epoch = self.mls.epoch().as_u64();
        let bundle = self
            .mls
            .commit_builder()
            .propose_adds(joiners.iter().map(|d| d.key_package(false)))
            .propose_removals(removed.iter().map(|i| LeafNodeIndex::new(*i)))
            .load_psks(p.storage())
            .unwrap()
            .create_group_info(true)
            .build(p.rand(), p.crypto(), &owner.signer, |_| true)
            .unwrap()
            .stage_commit(p)
            .unwrap();
        let (commit, welcome, group_info) = bundle.into_messages();
        let body = serde_json::json!({
            "epoch": epoch,
            "commit": tls(&commit),
            "welcome": welcome.map(|w| tls(&w)),
            "group_info": tls(&group_info.unwrap()),
        });
        let path = format!("/v1/conversations/{}/commits", self.id);
        let r = w.api.send(&path, Some(token), &body).await;
        if r.status().is_success() {
            self.mls.merge_pending_commit(p).unwrap();
        } else {
            self.mls.clear_pending_commit(p.storage()).unwrap();
        }
        r
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_hub_adds_only_approved_devices_and_keeps_members_revoked_since() {
    let w = world();
    let a1 = alice(1);
    let ta = w.join(&a1).await;
    let (b1, b2) = (
        Device::new("bob@mfa.example", 4),
        Device::new("bob@mfa.example", 5),
    );
    let tb = w.join(&b1).await;
    w.join(&b2).await;
    let bob = w.identity(&tb, &b1.addr.user).await;
    let mut g = Group::create(&w, &ta, &a1).await;

    let r = g.commit(&w, &ta, &a1, &[&b2], &[]).await;
    expect_problem(r, ErrorCode::Forbidden, "adding a pending device").await;
    w.approved(&tb, &bob, &b1, &b2, 1).await;
    let r = g.commit(&w, &ta, &a1, &[&b2], &[]).await;
    assert!(r.status().is_success(), "{}", r.status());

    // Bob revokes b2: it stays a member until someone removes it, and the
    // group goes on meanwhile.
    w.revoked(&tb, &bob, &b1, &b2, 2).await;
    let r = g.commit(&w, &ta, &a1, &[&b1], &[]).await;
    assert!(r.status().is_success(), "{}", r.status());
    let r = g.commit(&w, &ta, &a1, &[], &[1]).await;
    assert!(r.status().is_success(), "{}", r.status());
    let state: valise_proto::api::ConversationState = r.json().await.unwrap();
    assert_eq!(state.members, {
        let mut m = vec![a1.addr.clone(), b1.addr.clone()];
        m.sort();
        m
    });
}
