//! Issue 8, attack 1 (A4/A6, ATT&CK T1098.003): the intruder holds the
//! admin account and enrols a device of its own on bob's account with the
//! stock binaries. The device is published but pending: nobody encrypts to
//! it, so it reads nothing, and bob's devices alert. Enrolled *before* bob's
//! own first device, it founds the account's identity — which bob's
//! enrolment says plainly, with its own exit status; after a reset the
//! intruder's device reads nothing, and peers write to bob again only once
//! they compared safety codes.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::panic)]

mod common;
use common::{Server, addr};

#[test]
fn a_device_the_admin_enrols_on_an_account_reads_nothing() {
    let server = Server::start();
    let alice = server.device("alice");
    let bob = server.device("bob");
    alice.send_to(&["bob"], "before", "the intruder came");
    bob.sync();

    // The intruder mints an invite and enrols its own device as bob.
    let intruder = server.device("bob");
    assert!(intruder.link_code.is_some(), "it is pending");

    // Alice writes to bob: only bob's own device can read it.
    let sent = alice.send_to(&["bob"], "after", "only for bob");
    let conv = sent["conversation"].as_str().unwrap().to_owned();
    let members = alice.conversation(&conv)["members"][addr("bob")].clone();
    assert_eq!(members, serde_json::json!([bob.device_id()]));
    assert_eq!(bob.sync()["new_letters"], 1);
    let report = intruder.sync();
    assert_eq!(report["new_letters"], 0);
    assert_eq!(report["joined"], 0);
    assert!(intruder.subjects().is_empty());
    assert!(intruder.conversations().is_empty());
    // A pending device may not write to anyone either.
    let out = intruder.try_send_to("alice", "s");
    assert!(!out.status.success());

    // Bob's device alerts, names the device and says how to revoke it.
    let alerts = bob.json(&["alerts"]);
    let new = alerts
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["kind"] == "new_device")
        .expect("bob is told");
    let detail = new["detail"].as_str().unwrap();
    let rogue = intruder.device_id();
    assert!(detail.contains(&rogue), "{detail}");
    assert!(
        detail.contains(&format!("valise devices revoke {rogue}")),
        "{detail}"
    );
    // And bob revokes it: it can no longer even log in.
    bob.ok(&["devices", "revoke", &rogue]);
    let out = intruder.run(&["sync", "--json"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("device_revoked"));
    assert!(alice.alert_kinds().is_empty(), "{:?}", alice.alert_kinds());
}

#[test]
fn an_account_claimed_before_its_owner_enrols_is_visible_and_reset() {
    let server = Server::start();
    let alice = server.device("alice");
    // The intruder enrols first: its device founds bob's identity.
    let intruder = server.device("bob");
    assert!(intruder.link_code.is_none());
    // Alice looks bob up (she pins the identity the directory shows).
    alice.ok(&["verify", &addr("bob")]);

    // Bob's own enrolment says the account is taken, and by which device.
    let code = server.invite("bob");
    let home = server.dir.path().join("home-bob-real");
    let out = std::process::Command::new(common::valise_bin())
        .arg("--home")
        .arg(&home)
        .args(["enroll", &server.url, &addr("bob"), &code, "--ca"])
        .arg(server.ca())
        .env("VALISE_PASSPHRASE", common::PASSPHRASE)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(3), "its own exit status");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.contains("already has devices"), "{said}");
    assert!(said.contains(&intruder.device_id()), "{said}");
    assert!(said.contains("none of these devices is yours"), "{said}");

    // Bob reports it; the security officer resets the account. Bob's new
    // device founds a new identity and the intruder's is revoked.
    let reset = server.admin(&["invite", "--reset", &addr("bob")]);
    let bob = server.enroll("bob", &reset);
    assert!(bob.link_code.is_none(), "it founds generation 2");
    assert!(!intruder.run(&["sync"]).status.success());

    // Alice is told bob's identity changed, and writes nothing to him
    // until she compared codes: the letter waits in her outbox.
    let out = alice.try_send_to("bob", "s");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("verify"));
    assert!(alice.alert_kinds().contains(&"identity_changed".to_owned()));
    assert_eq!(alice.json(&["outbox"]).as_array().unwrap().len(), 1);
    assert_eq!(bob.sync()["joined"], 0);

    // Codes compared out of band: the letter goes, to bob's device only.
    let theirs = bob.json(&["verify", &addr("alice")])["safety_code"]
        .as_str()
        .unwrap()
        .to_owned();
    alice.ok(&["verify", &addr("bob"), "--code", &theirs]);
    assert_eq!(alice.sync()["delivered"], 1);
    assert_eq!(bob.sync()["new_letters"], 1);
    assert!(intruder.subjects().is_empty());
}
