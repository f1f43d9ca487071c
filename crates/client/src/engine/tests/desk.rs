//! Reports to the security desk: every alert queues one, within its
//! budget, to the pinned desk; the desk's own devices report nowhere; a
//! report is sealed and numbered as a letter, stored apart from letters on
//! the desk, and a missing one leaves a gap.

use super::*;
use crate::alert::AlertKind;
use crate::engine::desk::{REPORTS_PER_WINDOW, WINDOW_MS};
use crate::home::desk::Budget;
use crate::home::outbox::Outbound;
use valise_proto::Payload;

/// The alert reports waiting in `dev`'s outbox.
fn queued(dev: &Dev) -> Vec<(Outbound, valise_proto::AlertReport)> {
    dev.engine
        .home
        .outbox()
        .unwrap()
        .into_iter()
        .filter_map(|o| match Payload::decode(&o.plaintext).unwrap() {
            Payload::Alert(r) => Some((o, r)),
            _ => None,
        })
        .collect()
}

fn raise(dev: &Dev, kind: AlertKind, evidence: &[u8]) {
    dev.engine
        .raise(kind, None, "what the device saw", Some(evidence))
        .unwrap();
}

#[test]
fn every_alert_queues_a_report_to_the_pinned_desk_within_its_budget() {
    let alice = Dev::new("alice");
    // No desk known: the alert stays on the device.
    raise(&alice, AlertKind::RefusedMessage, b"evidence");
    assert!(queued(&alice).is_empty());
    alice.engine.pin_desk(Some(&user("soc"))).unwrap();
    for i in 0..REPORTS_PER_WINDOW + 2 {
        raise(&alice, AlertKind::RefusedMessage, &i.to_be_bytes());
    }
    raise(&alice, AlertKind::Fork, b"other kind");
    let reports = queued(&alice);
    assert_eq!(reports.len() as u64, REPORTS_PER_WINDOW + 1);
    assert_eq!(alice.alerts().len() as u64, REPORTS_PER_WINDOW + 4);
    let (entry, first) = &reports[0];
    assert_eq!(entry.conversation, None, "waits for the desk conversation");
    assert_eq!(
        entry.exact_to.as_deref(),
        Some("alice@mfa.example,soc@mfa.example")
    );
    assert_eq!(first.kind, "refused_message");
    assert_eq!(first.detail, "what the device saw");
    use sha2::Digest as _;
    let digest: [u8; 32] = sha2::Sha256::digest(0u64.to_be_bytes()).into();
    assert_eq!(first.evidence_sha256, [valise_proto::Sha256Digest(digest)]);
    assert_eq!(reports.last().unwrap().1.kind, "fork");
}

#[test]
fn the_budget_counts_what_it_does_not_report_into_the_next_report() {
    let home = Home::in_memory().unwrap();
    let spend = |now| home.spend_desk_budget("fork", now, 2, WINDOW_MS).unwrap();
    assert_eq!(spend(0), Budget::Report { suppressed: 0 });
    assert_eq!(spend(1), Budget::Report { suppressed: 0 });
    assert_eq!(spend(2), Budget::Spent);
    assert_eq!(spend(3), Budget::Spent);
    assert_eq!(spend(WINDOW_MS), Budget::Report { suppressed: 2 });
    assert_eq!(spend(WINDOW_MS + 1), Budget::Report { suppressed: 0 });
    assert_eq!(spend(WINDOW_MS + 2), Budget::Spent);
    // A clock set back starts a new window rather than a long silence.
    assert_eq!(spend(5), Budget::Report { suppressed: 1 });
}

#[test]
fn the_desks_own_devices_report_nowhere() {
    let soc = Dev::new("soc");
    soc.engine.pin_desk(Some(&user("soc"))).unwrap();
    raise(&soc, AlertKind::RefusedMessage, b"evidence");
    assert_eq!(soc.alerts(), ["refused_message"]);
    assert!(queued(&soc).is_empty());
}

#[test]
fn a_changed_desk_is_alerted_once_and_pinned_until_accepted() {
    let alice = Dev::new("alice");
    let (soc, mallory) = (user("soc"), user("mallory"));
    alice.engine.pin_desk(Some(&soc)).unwrap();
    alice.engine.learn_desk(Some(&soc)).unwrap();
    assert!(alice.alerts().is_empty());
    assert!(alice.engine.accept_desk().is_err(), "nothing to accept");
    alice.engine.learn_desk(Some(&mallory)).unwrap();
    alice.engine.learn_desk(Some(&mallory)).unwrap();
    assert_eq!(alice.alerts(), ["security_desk_changed"]);
    // The change itself is reported, to the pinned desk.
    let reports = queued(&alice);
    assert_eq!(reports.len(), 1);
    assert_eq!(
        reports[0].0.exact_to.as_deref(),
        Some("alice@mfa.example,soc@mfa.example")
    );
    // Back to the pinned one: forgotten; another change: said again.
    alice.engine.learn_desk(Some(&soc)).unwrap();
    assert!(!alice.engine.security_desk().unwrap().changed);
    alice.engine.learn_desk(None).unwrap();
    assert_eq!(
        alice.alerts(),
        ["security_desk_changed", "security_desk_changed"]
    );
    alice.engine.learn_desk(Some(&mallory)).unwrap();
    assert_eq!(alice.alerts().len(), 3);
    assert_eq!(alice.engine.accept_desk().unwrap(), Some(mallory.clone()));
    let desk = alice.engine.security_desk().unwrap();
    assert_eq!((desk.pinned, desk.changed), (Some(mallory), false));
}

#[test]
fn a_desk_named_after_enrolment_is_a_change_too() {
    // Enrolled when the organisation named no desk; the server names one
    // later: not obeyed until accepted.
    let alice = Dev::new("alice");
    alice.engine.pin_desk(None).unwrap();
    alice.engine.learn_desk(None).unwrap();
    assert!(alice.alerts().is_empty());
    alice.engine.learn_desk(Some(&user("mallory"))).unwrap();
    alice.engine.learn_desk(Some(&user("mallory"))).unwrap();
    assert_eq!(alice.alerts(), ["security_desk_changed"]);
    let desk = alice.engine.security_desk().unwrap();
    assert_eq!((desk.pinned, desk.changed), (None, true));
    // Nothing is reported to the desk the server names.
    raise(&alice, AlertKind::RefusedMessage, b"evidence");
    assert!(queued(&alice).is_empty());
    assert_eq!(alice.engine.accept_desk().unwrap(), Some(user("mallory")));
}

/// Seals alice's queued reports into `conv` (as the sync's release
/// does once the conversation exists) and returns the ciphertexts.
fn seal_reports(alice: &Dev, conv: &ConversationId) -> Vec<Vec<u8>> {
    queued(alice)
        .into_iter()
        .map(|(mut entry, _)| {
            entry.conversation = Some(*conv);
            assert_eq!(
                alice.engine.seal_or_hold(entry.clone()).unwrap(),
                Written::Sealed
            );
            let sealed = alice.engine.home.outbound(&entry.message_id).unwrap();
            alice
                .engine
                .home
                .drop_outbound(&[entry.message_id])
                .unwrap();
            sealed.unwrap().sealed.unwrap().ciphertext
        })
        .collect()
}

#[test]
fn reports_are_numbered_with_the_letters_and_kept_apart_from_them() {
    let (alice, soc) = (Dev::new("alice"), Dev::new("soc"));
    Dev::introduce(&[&alice, &soc]);
    alice.engine.pin_desk(Some(&soc.me().user)).unwrap();
    soc.engine.pin_desk(Some(&soc.me().user)).unwrap();
    let conv = conversation(&alice, &[&soc]);
    raise(&alice, AlertKind::RefusedMessage, b"one");
    let one = seal_reports(&alice, &conv);
    let letter = alice.write(&conv, "a letter between the reports");
    raise(&alice, AlertKind::Rollback, b"two");
    raise(&alice, AlertKind::Fork, b"three");
    let rest = seal_reports(&alice, &conv);

    let take = |m: &[u8]| soc.take(EntryKind::Application, &conv, &alice, m).unwrap();
    assert!(matches!(take(&one[0]), Applied::Report));
    assert!(matches!(take(&letter), Applied::Letter));
    // The server drops the report numbered 3: the desk sees the gap.
    assert!(matches!(take(&rest[1]), Applied::Report));
    assert_eq!(soc.alerts(), ["letters_withheld"]);
    assert_eq!(soc.subjects(), ["a letter between the reports"]);
    let stored = soc.engine.home.reports_after(0).unwrap();
    let kinds: Vec<&str> = stored.iter().map(|r| r.kind.as_str()).collect();
    assert_eq!(kinds, ["refused_message", "fork"]);
    assert_eq!(stored[0].user, alice.me().user);
    assert_eq!(stored[0].device, alice.me().device.to_string());
    // The desk reports nothing of its own alert.
    assert!(queued(&soc).is_empty());
}

/// A server restored from an older copy (or a fork) may lose an accepted
/// report: it is sealed again with its id, and the desk keeps one copy.
#[test]
fn an_accepted_report_is_sealed_again_and_stored_once() {
    let (alice, soc) = (Dev::new("alice"), Dev::new("soc"));
    Dev::introduce(&[&alice, &soc]);
    alice.engine.pin_desk(Some(&soc.me().user)).unwrap();
    let conv = conversation(&alice, &[&soc]);
    raise(&alice, AlertKind::ServerRestored, b"");
    let (mut entry, report) = queued(&alice).remove(0);
    entry.conversation = Some(conv);
    alice.engine.seal_or_hold(entry.clone()).unwrap();
    let sealed = alice
        .engine
        .home
        .outbound(&entry.message_id)
        .unwrap()
        .unwrap();
    alice.engine.note_accepted(&sealed).unwrap();
    alice
        .engine
        .home
        .drop_outbound(&[entry.message_id])
        .unwrap();

    assert_eq!(alice.engine.reseal_sent(&conv, 0).unwrap(), 1);
    let again = alice.engine.home.outbox().unwrap().remove(0);
    let Payload::Alert(resent) = Payload::decode(&again.plaintext).unwrap() else {
        panic!("not a report");
    };
    assert_eq!(resent.message_id, report.message_id);
    let take = |m: &[u8]| soc.take(EntryKind::Application, &conv, &alice, m).unwrap();
    assert!(matches!(
        take(&sealed.sealed.unwrap().ciphertext),
        Applied::Report
    ));
    assert!(matches!(
        take(&again.sealed.unwrap().ciphertext),
        Applied::Duplicate
    ));
    assert_eq!(soc.engine.home.reports_after(0).unwrap().len(), 1);
}
