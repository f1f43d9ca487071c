//! Issue 11: handling markings enforced per recipient, by the clients, out
//! of the server's reach. The security officer's authority key signs
//! accreditations offline; the server only carries them, and every attack
//! it can make on them (its own key, an expired one replayed, another
//! authority named, a device the officer did not accredit) ends in a
//! refused marked send and an alert. A client changed to send past the
//! check is caught by every receiving device (spillage), and the device
//! that is not accredited never shows the letter.
// Test helpers: a failed unwrap there is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::officer::{MODIFIED, Officer, officer_and_server, offline, publish};
use common::{Server, addr, assert_ok, assert_refused, contains, files, send_in_args, stderr};
use serde_json::json;
use std::process::Command;
use valise_proto::audit::{Action, Subject};
use valise_proto::{Label, UserId};

#[test]
fn the_catalogue_and_unknown_markings() {
    let listed = offline(&["markings"]);
    let names: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["name"].as_str().unwrap())
        .collect();
    for name in [
        "TLP:CLEAR",
        "TLP:AMBER+STRICT",
        "TLP:RED",
        "LIMITE",
        "SENSITIVE",
        "RESTREINT UE/EU RESTRICTED",
        "NATO RESTRICTED",
        "VYHRAZENÉ",
        "DIFFUSION RESTREINTE",
        "VS-NUR FÜR DEN DIENSTGEBRAUCH",
    ] {
        assert!(names.contains(&name), "{name} missing from {names:?}");
    }
    let server = Server::start();
    let alice = server.device("alice");
    server.device("bob");
    let out = alice.try_send_marked_to(&["bob"], "s", "SECRET//NOFORN");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains("unknown marking") && err.contains("valise markings"),
        "{err}"
    );
    assert!(alice.conversations().is_empty());
}

#[test]
fn an_accredited_letter_goes_end_to_end_marked_and_sealed() {
    let (dir, so, server) = officer_and_server();

    // A careful user checks the authority out of band at enrolment: a
    // server naming another key is refused before the device is made.
    let enrol = |name: &str, fingerprint: &str| {
        let code = server.invite(name);
        let pin = ["--authority-fingerprint", fingerprint];
        server.try_enroll(dir.path().join(name), name, &code, &pin, &[])
    };
    let (_, out) = enrol("dave", &"0".repeat(64));
    assert_refused(&out, &so.fingerprint);
    let (alice, out) = enrol("alice", &so.fingerprint);
    assert_ok(&out);
    let bob = server.device("bob");

    so.accredit_all(&server, &["alice", "bob"], "EU RESTRICTED");
    bob.sync();

    let out = alice.try_send_marked_to(&["bob"], "Démarche", "eu restricted");
    assert_ok(&out);
    // LIMITE is covered by an EU RESTRICTED accreditation; its canary
    // caveat-free label is the one looked for below.
    let out = alice.try_send_marked_to(&["bob"], "Note", "LIMITE");
    assert_ok(&out);
    bob.sync();
    let inbox = bob.inbox();
    let markings: Vec<&str> = inbox
        .iter()
        .map(|l| l["marking"].as_str().unwrap())
        .collect();
    assert_eq!(markings, ["EU RESTRICTED", "LIMITE"]);
    let text = String::from_utf8(bob.run(&["inbox"]).stdout).unwrap();
    assert!(text.contains("[EU RESTRICTED] Démarche"), "{text}");
    assert!(text.contains("[LIMITE] Note"), "{text}");
    for dev in [&alice, &bob] {
        assert!(dev.alert_details("spillage").is_empty());
        assert!(dev.alert_details("unaccredited_recipient").is_empty());
    }

    // NO-PLAINTEXT: the letters' labels are inside the ciphertext. The
    // attestations are public in the directory and name EU RESTRICTED, so
    // the scan looks for LIMITE: its name and its CBOR encoding.
    let limite = Label::parse("LIMITE").unwrap().to_cbor().unwrap();
    let restricted = Label::parse("EU RESTRICTED").unwrap().to_cbor().unwrap();
    let scanned = files(&server.data());
    assert!(scanned.iter().any(|p| p.ends_with("valised.log")));
    let mut all = Vec::new();
    for p in &scanned {
        all.extend(std::fs::read(p).unwrap());
    }
    // Control: the attestations (with their label) are in the store.
    assert!(
        contains(&all, &restricted),
        "the scan does not read the store"
    );
    assert!(
        !contains(&all, &limite),
        "a letter's label reached the server"
    );
    assert!(
        !contains(&all, b"LIMITE"),
        "a marking's name reached the server"
    );

    // Each publication is on record in the audit log, for its user.
    let published = |who: &str| {
        let who = Subject::User(UserId::parse(&addr(who)).unwrap());
        common::audit::entries(&server)
            .iter()
            .any(|e| e.action == Action::AttestationPublished && e.subject.as_ref() == Some(&who))
    };
    for _ in 0..50 {
        if published("alice") && published("bob") {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    panic!("attestation_published is not in the audit log");
}

#[test]
fn attestations_the_server_forges_or_replays_accredit_nobody() {
    let (dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    publish(&server, &so.accredit("alice", "EU RESTRICTED", None));

    // The intruder signs bob's accreditation with a key of its own. The
    // administrator's command refuses it; the intruder plants it anyway.
    let intruder = Officer::new(dir.path(), "intruder");
    let forged_file = intruder.accredit("bob", "EU RESTRICTED", None);
    let out = Command::new(common::valised_bin())
        .args(["admin", "--data"])
        .arg(server.data())
        .arg("publish-attestation")
        .arg(&forged_file)
        .output()
        .unwrap();
    assert_refused(&out, "not signed by");
    let forged = std::fs::read(&forged_file).unwrap();
    plant_attestation(&server, "bob", &forged);
    let out = alice.try_send_marked_to(&["bob"], "s1", "EU RESTRICTED");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(
        err.contains(&bob.device_id()) && err.contains("bob@"),
        "{err}"
    );
    assert!(
        err.contains("not signed by the pinned accreditation authority"),
        "{err}"
    );
    assert_eq!(alice.alert_details("unaccredited_recipient").len(), 1);

    // It replays an attestation the officer signed for bob, expired.
    let expired = so.sign("bob", "EU RESTRICTED", 1_700_000_000);
    plant_attestation(&server, "bob", &expired);
    let out = alice.try_send_marked_to(&["bob"], "s2", "EU RESTRICTED");
    assert_refused(&out, "expired");
    assert_eq!(alice.alert_details("unaccredited_recipient").len(), 2);

    // It names its own key as the authority and publishes with it, as
    // the administrator's commands allow: the devices keep the pinned key.
    server.admin(&["set", "accreditation-authority", &intruder.public]);
    publish(&server, &intruder.accredit("bob", "EU RESTRICTED", None));
    alice.sync();
    let changed = alice.alert_details("accreditation_authority_changed");
    assert_eq!(changed.len(), 1, "{changed:?}");
    assert!(changed[0].contains(&intruder.public), "{}", changed[0]);
    let out = alice.try_send_marked_to(&["bob"], "s3", "EU RESTRICTED");
    assert!(!out.status.success());
    assert_eq!(alice.alert_details("unaccredited_recipient").len(), 3);

    // Nothing marked reached bob; an unmarked letter still goes.
    bob.sync();
    assert!(bob.inbox().is_empty());
    alice.send_to(&["bob"], "plain", "unmarked");
    bob.sync();
    assert_eq!(bob.subjects(), ["plain"]);

    // The officer's own attestation for bob, once published, is obeyed.
    server.admin(&["set", "accreditation-authority", &so.public]);
    publish(&server, &so.accredit("bob", "EU RESTRICTED", None));
    let out = alice.try_send_marked_to(&["bob"], "s4", "EU RESTRICTED");
    assert_ok(&out);
}

#[test]
fn a_device_the_officer_did_not_accredit_gets_nothing_marked() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    publish(&server, &so.accredit("alice", "EU RESTRICTED", None));
    // Bob is accredited on his desktop only.
    publish(
        &server,
        &so.accredit("bob", "EU RESTRICTED", Some(&bob.device_id())),
    );
    bob.sync();
    let out = alice.try_send_marked_to(&["bob"], "first", "EU RESTRICTED");
    assert_ok(&out);

    // The intruder, as administrator, enrols a device on bob's account:
    // pending, never in the conversation, so marked letters still go to
    // bob's desktop only.
    let rogue = server.device("bob");
    assert!(rogue.link_code.is_some());
    let out = alice.try_send_marked_to(&["bob"], "second", "EU RESTRICTED");
    assert_ok(&out);
    assert_eq!(rogue.sync()["new_letters"], 0);

    // Bob approves a phone the officer never accredited: it joins the
    // conversation, and marked letters to bob are refused by name.
    let phone = server.second_device("bob", &bob);
    common::settle(&[&bob, &phone, &alice]);
    let out = alice.try_send_marked_to(&["bob"], "third", "EU RESTRICTED");
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains(&phone.device_id()), "{err}");
    assert!(err.contains("other devices"), "{err}");
    assert_eq!(alice.alert_details("unaccredited_recipient").len(), 1);
    bob.sync();
    phone.sync();
    assert_eq!(bob.subjects(), ["first", "second"]);
    assert!(phone.subjects().is_empty());
}

#[test]
fn a_modified_client_spills_and_every_device_sees_it() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    so.accredit_all(&server, &["alice", "bob"], "EU RESTRICTED");
    so.accredit_all(&server, &["carol"], "TLP:CLEAR");
    let conv = alice.create("partners", &["bob", "carol"]);
    common::settle(&[&alice, &bob, &carol]);

    // The honest client refuses, naming carol.
    let args = restricted_letter(&conv, "Démarche", "the minister resigns");
    let out = alice.run(&args);
    assert_refused(&out, &carol.device_id());

    // A client changed to skip the check sends it anyway.
    let out = alice.run_env(&args, MODIFIED);
    assert_ok(&out);
    bob.sync();
    carol.sync();

    // Carol's device is not accredited: it never renders the letter, only
    // a stub that says why.
    assert_eq!(carol.subjects(), ["(withheld)"]);
    common::assert_withheld(&carol, "not accredited", &["Démarche", "minister"]);
    assert!(!carol.ok(&["inbox"]).contains("Démarche"));
    let spilled = carol.alert_details("spillage");
    assert_eq!(spilled.len(), 1, "{spilled:?}");
    assert!(spilled[0].contains("EU RESTRICTED") && spilled[0].contains("alice@"));
    assert!(!spilled[0].contains("minister") && !spilled[0].contains("Démarche"));
    // Bob is accredited: he reads it, and is told where it spilled.
    assert_eq!(bob.subjects(), ["Démarche"]);
    let spilled = bob.alert_details("spillage");
    assert_eq!(spilled.len(), 1, "{spilled:?}");
    assert!(spilled[0].contains(&carol.device_id()), "{}", spilled[0]);
}

/// The officer accredits bob and carol, and alice writes to them at once:
/// her device reads their new entries before it seals; bob's has not read
/// its own, nor carol's, since. It reads them again before it judges the
/// letter: shown, and no spillage alert (a lost letter and a false alarm at
/// the security desk otherwise). A device that is still not accredited
/// after that read is refused as before.
#[test]
fn a_letter_sent_right_after_an_accreditation_is_judged_on_the_new_entries() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    let dave = server.device("dave");
    so.accredit_all(&server, &["alice"], "EU RESTRICTED");
    let conv = alice.create("partners", &["bob", "carol"]);
    common::settle(&[&alice, &bob, &carol]);

    so.accredit_all(&server, &["bob", "carol"], "EU RESTRICTED");
    let marked =
        |subject: &str, conv: &str| alice.run_env(&restricted_letter(conv, subject, "b"), MODIFIED);
    assert_ok(&marked("Démarche", &conv));
    bob.sync();
    assert_eq!(bob.subjects(), ["Démarche"]);
    assert!(bob.alert_details("spillage").is_empty());

    // Dave is not accredited, however fresh his entry: refused, alerted.
    let direct = alice.create("dave", &["dave"]);
    common::settle(&[&alice, &dave]);
    assert_ok(&marked("Note", &direct));
    dave.sync();
    assert_eq!(dave.subjects(), ["(withheld)"]);
    assert_eq!(dave.alert_details("spillage").len(), 1);
}

/// Red team: the server makes the lookup fail that bob's device makes to
/// judge a marked letter on carol's fresh entry (it shows that device an
/// old directory root from now on). Judged on her entry from before her
/// accreditation, the letter raised a spillage alert that said, as plain
/// fact, that carol's device is not accredited: a false alarm at the
/// security desk, at the server's will. The alert is still raised (a
/// server must not hide a real spillage by failing lookups), but says on
/// what it was judged.
#[test]
fn a_spillage_judged_on_an_entry_that_could_not_be_read_again_says_so() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    let bob = server.device("bob");
    let carol = server.device("carol");
    so.accredit_all(&server, &["alice", "bob"], "EU RESTRICTED");
    let conv = alice.create("partners", &["bob", "carol"]);
    common::settle(&[&alice, &bob, &carol]);
    so.accredit_all(&server, &["carol"], "EU RESTRICTED");
    assert_ok(&alice.run(&restricted_letter(&conv, "Démarche", "b")));

    server.hook(
        "fork-root",
        json!({"device": bob.address(), "mode": "rollback", "epoch": 1}),
    );
    let _refused_root = bob.run(&["sync"]);
    assert!(bob.has_alert("directory_conflict"));
    assert_eq!(bob.subjects(), ["Démarche"]);
    let spilled = bob.alert_details("spillage");
    assert_eq!(spilled.len(), 1, "{spilled:?}");
    assert!(
        spilled[0].contains("could not be read again"),
        "{}",
        spilled[0]
    );
}

#[test]
fn the_owner_is_told_of_an_attestation_published_on_their_account() {
    let (_dir, so, server) = officer_and_server();
    let alice = server.device("alice");
    common::audit::checkpointed();
    assert_eq!(alice.sync()["admin_actions"], 0);
    publish(&server, &so.accredit("alice", "LIMITE", None));
    common::audit::checkpointed();
    assert_eq!(alice.sync()["admin_actions"], 1);
    let told = alice.alert_details("admin_action");
    assert!(told[0].contains("accreditation attestation"), "{}", told[0]);
}

/// `send` of an EU RESTRICTED letter in `conv`: the arguments.
fn restricted_letter<'a>(conv: &'a str, subject: &'a str, body: &'a str) -> Vec<&'a str> {
    let mut args = send_in_args(conv, subject, body);
    args.extend(["--marking", "EU RESTRICTED"]);
    args
}

/// The intruder's hook: the server serves `attestation` as `user`'s,
/// past the administrator's checks.
fn plant_attestation(server: &Server, user: &str, attestation: &[u8]) {
    use base64::Engine as _;
    let attestation = base64::engine::general_purpose::STANDARD.encode(attestation);
    server.hook(
        "attestation",
        json!({"user": addr(user), "attestation": attestation}),
    );
}
