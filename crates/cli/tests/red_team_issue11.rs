//! Red team, issue 11 (attachments, markings, export). Each test plays one
//! way in against a real server and real clients; the story test at the
//! top covers what the merge left untested: saving and forwarding an
//! EU RESTRICTED letter with an annex.
// Test support: a failed unwrap here is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;
use common::officer::{Officer, publish, server_with};
use common::{Device, Server, stderr};
use std::path::{Path, PathBuf};

/// Lets the device at `dev` save restricted letters into `dirs` only.
fn approve_export_dirs(dev: &Device, dirs: &[&Path]) {
    let settings = serde_json::json!({ "approved_export_dirs": dirs });
    std::fs::write(dev.home.join("settings.json"), settings.to_string()).unwrap();
}

/// `from` sends `to` a letter marked `marking` with `file` attached;
/// `to`'s letter id.
fn send_marked_with(from: &Device, to: &Device, subject: &str, marking: &str, file: &Path) -> i64 {
    let sent = from.json(&[
        "send",
        "--to",
        &to.user,
        "--subject",
        subject,
        "--body",
        "See the annex.",
        "--marking",
        marking,
        "--attach",
        file.to_str().unwrap(),
    ]);
    let synced = to.sync();
    let inbox = to.inbox();
    let letter = inbox.iter().find(|l| l["subject"] == subject);
    letter.unwrap_or_else(|| panic!("{sent} {synced} {inbox:?}"))["id"]
        .as_i64()
        .unwrap()
}

/// `approved` and `elsewhere` under `dir`; `dev` may save restricted
/// letters into the first only.
fn export_dirs(dir: &Path, dev: &Device) -> (PathBuf, PathBuf) {
    let approved = dir.join("approved");
    let elsewhere = dir.join("elsewhere");
    std::fs::create_dir_all(&approved).unwrap();
    std::fs::create_dir_all(&elsewhere).unwrap();
    approve_export_dirs(dev, &[&approved]);
    (approved, elsewhere)
}

fn count(dev: &Device, kind: &str) -> usize {
    dev.alert_kinds().iter().filter(|k| *k == kind).count()
}

/// A server whose officer accredited `users` for EU RESTRICTED, and their
/// devices, each of which has seen its own accreditation.
fn accredited(dir: &Path, users: &[&str]) -> (Server, Vec<Device>) {
    let so = Officer::new(dir, "so");
    let server = server_with(&so);
    let devices: Vec<Device> = users.iter().map(|u| server.device(u)).collect();
    for user in users {
        publish(&server, &so.accredit(user, "EU RESTRICTED", None));
    }
    for d in &devices {
        d.sync();
    }
    (server, devices)
}

/// Story: an EU RESTRICTED annex is saved only into an approved export
/// directory, with its label beside it and an `export` alert; forwarded,
/// it opens for the new conversation's member.
#[test]
fn a_restricted_annex_is_exported_only_where_approved_and_forwarded_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, devices) = accredited(dir.path(), &["alice", "bob", "carol"]);
    let [alice, bob, carol] = &devices[..] else {
        unreachable!()
    };
    let annex = dir.path().join("annex.pdf");
    std::fs::write(&annex, b"%PDF-1.7 the negotiating mandate").unwrap();
    let id = send_marked_with(alice, bob, "Mandate", "EU RESTRICTED", &annex);

    let (approved, elsewhere) = export_dirs(dir.path(), bob);

    // Outside the approved directories: refused, nothing written.
    let out = bob.save(id, 1, &elsewhere.join("annex.pdf"));
    assert!(!out.status.success());
    assert!(
        stderr(&out).contains("approved export directory"),
        "{}",
        stderr(&out)
    );
    assert!(common::files(&elsewhere).is_empty());
    assert_eq!(count(bob, "export"), 0);

    // Inside: the file, its label, and the alert.
    let target = approved.join("annex.pdf");
    let out = bob.save(id, 1, &target);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(&target).unwrap(),
        std::fs::read(&annex).unwrap()
    );
    let label: serde_json::Value =
        serde_json::from_slice(&std::fs::read(approved.join("annex.pdf.label.json")).unwrap())
            .unwrap();
    assert_eq!(label["label"], "EU RESTRICTED");
    assert_eq!(count(bob, "export"), 1);

    // Forwarded: the new conversation's member saves the same annex.
    let conv = bob.create("Mandate team", &["carol"]);
    bob.json(&["forward", &id.to_string(), "--conversation", &conv]);
    carol.sync();
    let fwd = carol
        .inbox()
        .into_iter()
        .find(|l| l["subject"] == "Fwd: Mandate")
        .unwrap();
    assert_eq!(fwd["marking"], "EU RESTRICTED");
    let carols = dir.path().join("carol-approved");
    std::fs::create_dir_all(&carols).unwrap();
    approve_export_dirs(carol, &[&carols]);
    let out = carol.save(fwd["id"].as_i64().unwrap(), 1, &carols.join("annex.pdf"));
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(
        std::fs::read(carols.join("annex.pdf")).unwrap(),
        std::fs::read(&annex).unwrap()
    );
    assert_eq!(count(carol, "export"), 1);
}

/// Whoever can write into a shared approved export directory plants
/// `annex.pdf.label.json` as a link to a file elsewhere: the save must not
/// follow it (it would write the letter's label and ids outside the
/// approved directories, over whatever the link names).
#[cfg(unix)]
#[test]
fn a_planted_label_link_is_not_followed() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, devices) = accredited(dir.path(), &["alice", "bob"]);
    let [alice, bob] = &devices[..] else {
        unreachable!()
    };
    let annex = dir.path().join("annex.pdf");
    std::fs::write(&annex, b"%PDF-1.7 annex").unwrap();
    let id = send_marked_with(alice, bob, "Mandate", "EU RESTRICTED", &annex);
    let (approved, elsewhere) = export_dirs(dir.path(), bob);
    let victim = elsewhere.join("victim.txt");
    std::fs::write(&victim, b"precious").unwrap();
    std::os::unix::fs::symlink(&victim, approved.join("annex.pdf.label.json")).unwrap();

    let out = bob.save(id, 1, &approved.join("annex.pdf"));
    assert!(!out.status.success(), "the save followed the planted link");
    assert!(
        stderr(&out).contains("label file exists"),
        "{}",
        stderr(&out)
    );
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious");
    assert!(!approved.join("annex.pdf").exists(), "nothing is written");
}

/// Devices enrolled before any accreditation authority was set pin the
/// first key the server names. The intruder holding the admin account
/// names its own and accredits whom it likes: the first-sight pin must be
/// seen on every device (with the fingerprint to check), not taken in
/// silence.
#[test]
fn a_first_sight_authority_pin_is_alerted() {
    let dir = tempfile::tempdir().unwrap();
    let server = common::Server::start_with(&["--checkpoint-interval-secs", "1"]);
    let alice = server.device("alice");
    let _bob = server.device("bob");
    let intruder = Officer::new(dir.path(), "intruder");
    server.admin(&["set", "accreditation-authority", &intruder.public]);
    for user in ["alice", "bob"] {
        publish(&server, &intruder.accredit(user, "EU RESTRICTED", None));
    }
    alice.sync();
    let pinned: Vec<String> = alice
        .json(&["alerts"])
        .as_array()
        .unwrap()
        .iter()
        .filter(|a| a["kind"] == "accreditation_authority_changed")
        .map(|a| a["detail"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(pinned.len(), 1, "the pin was taken in silence");
    assert!(pinned[0].contains(&intruder.fingerprint), "{}", pinned[0]);
    // Seen once, not at every sync.
    alice.sync();
    assert_eq!(count(&alice, "accreditation_authority_changed"), 1);
}

/// A member (any client: these are plain arguments) writes a subject with
/// terminal controls and an annex name with a right-to-left override, so
/// that an EU RESTRICTED letter shows as TLP:CLEAR and `mandate.exe` as a
/// PDF. The text a device prints must carry none of them.
#[test]
fn a_member_cannot_forge_what_the_terminal_shows() {
    let dir = tempfile::tempdir().unwrap();
    let (_server, devices) = accredited(dir.path(), &["alice", "bob"]);
    let [alice, bob] = &devices[..] else {
        unreachable!()
    };
    let annex = dir.path().join("mandate\u{202E}fdp.exe");
    std::fs::write(&annex, b"MZ").unwrap();
    let subject = "\u{1b}[2K\r    1  [TLP:CLEAR] Lunch";
    let id = send_marked_with(alice, bob, subject, "EU RESTRICTED", &annex);
    for args in [
        vec!["inbox".to_owned()],
        vec!["read".to_owned(), id.to_string()],
    ] {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = bob.run(&args);
        assert!(out.status.success(), "{}", stderr(&out));
        let text = String::from_utf8(out.stdout).unwrap();
        for bad in ['\u{1b}', '\r', '\u{202E}'] {
            assert!(!text.contains(bad), "{args:?} printed {bad:?}: {text:?}");
        }
        assert!(text.contains("[EU RESTRICTED]"), "{text:?}");
    }
}

/// The intruder edits the authority key in the server's database into
/// terminal controls: the `accreditation_authority_changed` alert quotes
/// what the server named, and `valise alerts` must not replay it.
#[test]
fn a_server_cannot_drive_the_terminal_through_an_alert() {
    let dir = tempfile::tempdir().unwrap();
    let (server, devices) = accredited(dir.path(), &["alice"]);
    let alice = &devices[0];
    let forged = "\u{1b}]0;valise\u{7}\u{1b}[2K\rno alerts";
    server
        .db()
        .execute(
            "UPDATE accreditation_authority SET key = ?1 WHERE only = 1",
            [forged],
        )
        .unwrap();
    alice.sync();
    assert_eq!(count(alice, "accreditation_authority_changed"), 1);
    let out = alice.run(&["alerts"]);
    let text = String::from_utf8(out.stdout).unwrap();
    for bad in ['\u{1b}', '\r', '\u{7}'] {
        assert!(!text.contains(bad), "printed {bad:?}: {text:?}");
    }
}

/// The hub withholds from a joiner the member's conversation record that
/// carries the policy (an unnumbered message, so no gap shows): the
/// joiner never learnt the ceiling, dropped every marked letter for good
/// and blamed its sender with a `spillage` alert. A marked letter now
/// carries the record, taken only if the group context holds its hash.
#[test]
fn a_withheld_policy_record_loses_no_letter_and_blames_no_one() {
    let dir = tempfile::tempdir().unwrap();
    let (server, devices) = accredited(dir.path(), &["alice", "bob"]);
    let [alice, bob] = &devices[..] else {
        unreachable!()
    };
    let conv = alice.json(&[
        "conversation",
        "create",
        "--name",
        "Mandate",
        "--ceiling",
        "EU RESTRICTED",
        "--member",
        &bob.user,
    ])["conversation"]
        .as_str()
        .unwrap()
        .to_owned();
    let records: Vec<u64> = server
        .pending(bob)
        .iter()
        .filter(|e| e["kind"] == "application")
        .map(|e| e["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(records.len(), 1, "the one conversation record");
    server.hook(
        "drop",
        serde_json::json!({ "device": bob.address(), "seqs": records }),
    );
    alice.json(&[
        "send",
        "--conversation",
        &conv,
        "--subject",
        "Instructions",
        "--body",
        "b",
        "--marking",
        "EU RESTRICTED",
    ]);
    bob.sync();
    assert_eq!(count(bob, "spillage"), 0, "{}", bob.json(&["alerts"]));
    let inbox = bob.inbox();
    assert_eq!(inbox.len(), 1, "the letter was lost");
    assert_eq!(inbox[0]["marking"], "EU RESTRICTED");
    assert_eq!(bob.conversation(&conv)["ceiling"], "EU RESTRICTED");
}
