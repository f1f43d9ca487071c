//! Issue 10: an administrator cannot act on an account without its owner
//! being told. The audit entries of an invite, a revocation and a reset on
//! alice's account reach her device on its next sync as `admin_action`
//! alerts, each carrying the entry and its inclusion proof in a checkpoint
//! signed by the audit key her device pinned at enrolment; a server that
//! then shows her another history of its log raises `audit_conflict`.
// Helpers of this test may fail loudly: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use base64::Engine as _;
use common::audit::checkpointed;
use common::{Device, Server, addr};
use serde_json::Value;
use valise_proto::audit::{Action, Entry};
use valise_proto::tlog::{AuditKey, SignedCheckpoint};

/// The `admin_action` alerts of a device: their evidence, decoded.
fn admin_actions(device: &Device) -> Vec<Value> {
    device
        .json(&["alerts"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "admin_action")
        .map(|a| {
            let bytes = hex::decode(a["evidence"].as_str().unwrap()).unwrap();
            serde_json::from_slice(&bytes).unwrap()
        })
        .collect()
}

/// Checks an alert's evidence as anyone holding the audit key can: the
/// checkpoint is signed, and the entry is in it at its place.
fn proven(server: &Server, evidence: &Value) -> Entry {
    let key: [u8; 32] = hex::decode(server.audit_key()).unwrap().try_into().unwrap();
    let key = AuditKey::new(&format!("{}/valise-audit", common::DOMAIN), &key).unwrap();
    let checkpoint = SignedCheckpoint::parse(evidence["checkpoint"].as_str().unwrap())
        .unwrap()
        .verify(&key)
        .unwrap();
    let entry: Entry = serde_json::from_value(evidence["entry"].clone()).unwrap();
    let proof: Vec<[u8; 32]> = evidence["proof"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            base64::engine::general_purpose::STANDARD
                .decode(h.as_str().unwrap())
                .unwrap()
                .try_into()
                .unwrap()
        })
        .collect();
    let index = evidence["index"].as_u64().unwrap();
    checkpoint
        .verify_inclusion(index, &entry.encode(), &proof)
        .unwrap();
    entry
}

#[test]
fn admin_actions_on_an_account_reach_its_devices_with_their_proof() {
    let mut server = Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    let _bob = server.device("bob");
    checkpointed();
    // Her own enrolment's invite is no news, nor is anything about bob.
    assert_eq!(alice.sync()["admin_actions"], 0);
    assert!(admin_actions(&alice).is_empty());

    // The administrator prepares a device for alice behind her back.
    let code = server.invite("alice");
    checkpointed();
    let report = alice.sync();
    assert_eq!(report["admin_actions"], 1, "{report}");
    let shown = admin_actions(&alice);
    let entry = proven(&server, &shown[0]);
    assert_eq!(entry.action, Action::InviteIssued);
    assert_eq!(entry.subject_user().unwrap().to_string(), addr("alice"));
    // Once: the next sync has nothing new.
    assert_eq!(alice.sync()["admin_actions"], 0);

    // Enrolled with that code, the device waits for alice's approval; the
    // administrator revokes another of her devices, and prepares a reset.
    let intruder = server.enroll("alice", &code);
    assert!(intruder.link_code.is_some());
    let phone = server.second_device("alice", &alice);
    let phone_id = phone.address().rsplit('/').next().unwrap().to_owned();
    server.admin(&["revoke", &addr("alice"), &phone_id]);
    server.admin(&["invite", &addr("alice"), "--reset"]);
    checkpointed();
    alice.sync();
    let actions: Vec<Action> = admin_actions(&alice)
        .iter()
        .map(|e| proven(&server, e).action)
        .collect();
    assert_eq!(
        actions,
        [
            Action::InviteIssued,
            Action::InviteIssued,
            Action::DeviceRevoked,
            Action::InviteIssued
        ]
    );
    let reset = proven(&server, &admin_actions(&alice)[3]);
    assert!(
        String::from_utf8(reset.encode())
            .unwrap()
            .contains(r#""reset":1"#)
    );

    // The server rolled back to a log that forgets all this, and grown
    // again: alice's device does not follow it.
    server.stop();
    let conn = server.db();
    conn.execute_batch(
        "DELETE FROM audit_entries WHERE idx >= 3; DELETE FROM audit_checkpoints WHERE size > 3; \
         DELETE FROM audit_nodes WHERE (idx + 1) << level > 3; \
         DELETE FROM audit_account WHERE idx >= 3;",
    )
    .unwrap();
    drop(conn);
    server.restart();
    checkpointed();
    alice.sync();
    let conflicts = |d: &common::Device| {
        d.alert_kinds()
            .iter()
            .filter(|k| *k == "audit_conflict")
            .count()
    };
    assert_eq!(conflicts(&alice), 1, "{:?}", alice.alert_kinds());
    // It lasts, and is said once (the log grew and was signed again).
    checkpointed();
    alice.sync();
    assert_eq!(conflicts(&alice), 1, "{:?}", alice.alert_kinds());
}
