//! Letters that reach a device before the commit that starts their epoch
//! (a server reordering, or withholding that commit): kept, opened once it
//! comes, kept across restarts, and bounded.

use super::*;
use crate::engine::held::MAX_HELD_LETTERS;

/// Alice renews her leaf: a commit bob has not been handed yet.
fn renew(alice: &Dev, conv: &ConversationId) -> SubmitCommit {
    alice.commit(
        conv,
        Change {
            update: true,
            ..Change::default()
        },
    )
}

fn held(dev: &Dev, conv: &ConversationId) -> u64 {
    dev.engine.home.held_size(conv).unwrap().0
}

#[test]
fn a_letter_ahead_of_its_commits_waits_for_them_and_then_opens() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let (first, second) = (renew(&alice, &conv), renew(&alice, &conv));
    let early = alice.write(&conv, "early");
    // The server hands bob the letter of epoch 3 while he is at epoch 1.
    let out = bob.take(EntryKind::Application, &conv, &alice, &early);
    assert!(matches!(out, Ok(Applied::Held)), "{out:?}");
    assert!(bob.subjects().is_empty());
    assert_eq!(held(&bob, &conv), 1);
    // Epoch 2 is not yet the letter's: it still waits.
    let out = bob.take(EntryKind::Commit, &conv, &alice, first.commit.as_slice());
    assert!(matches!(out, Ok(Applied::Commit { opened: 0 })), "{out:?}");
    assert_eq!(held(&bob, &conv), 1);
    let out = bob.take(EntryKind::Commit, &conv, &alice, second.commit.as_slice());
    assert!(matches!(out, Ok(Applied::Commit { opened: 1 })), "{out:?}");
    assert_eq!(held(&bob, &conv), 0);
    // Its number counted: the next one leaves no gap.
    let next = alice.write(&conv, "next");
    assert!(matches!(
        bob.take(EntryKind::Application, &conv, &alice, &next),
        Ok(Applied::Letter)
    ));
    assert_eq!(bob.subjects(), ["early", "next"]);
    assert!(bob.alerts().is_empty(), "{:?}", bob.alerts());
}

#[test]
fn a_held_letter_survives_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bob");
    let alice = Dev::new("alice");
    let bob = Dev::on_disk(&path, "bob");
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let commit = renew(&alice, &conv);
    let early = alice.write(&conv, "early");
    let out = bob.take(EntryKind::Application, &conv, &alice, &early);
    assert!(matches!(out, Ok(Applied::Held)), "{out:?}");
    // The device stops; its home is opened again.
    let bob = bob.reopen(&path);
    assert_eq!(held(&bob, &conv), 1);
    let out = bob.take(EntryKind::Commit, &conv, &alice, commit.commit.as_slice());
    assert!(matches!(out, Ok(Applied::Commit { opened: 1 })), "{out:?}");
    assert_eq!(bob.subjects(), ["early"]);
}

#[test]
fn held_letters_are_bounded_and_the_oldest_dropped_is_alerted() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let commit = renew(&alice, &conv);
    let (oldest, flood) = (alice.write(&conv, "oldest"), alice.write(&conv, "flood"));
    bob.take(EntryKind::Application, &conv, &alice, &oldest)
        .unwrap();
    // The server withholds the commit and floods copies of a later letter.
    for _ in 0..MAX_HELD_LETTERS {
        let out = bob.take(EntryKind::Application, &conv, &alice, &flood);
        assert!(matches!(out, Ok(Applied::Held)), "{out:?}");
    }
    assert_eq!(held(&bob, &conv), MAX_HELD_LETTERS);
    let alerts = bob.engine.home.alerts(false).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "refused_message");
    assert!(
        alerts[0].detail.contains("epoch 2") && alerts[0].detail.contains("never came"),
        "{}",
        alerts[0].detail
    );
    // When the commit comes, what was kept opens (one copy; the others
    // are replays, refused).
    let out = bob.take(EntryKind::Commit, &conv, &alice, commit.commit.as_slice());
    assert!(matches!(out, Ok(Applied::Commit { opened: 1 })), "{out:?}");
    assert_eq!(bob.subjects(), ["flood"]);
    assert_eq!(held(&bob, &conv), 0);
}

#[test]
fn a_letter_still_held_after_the_whole_inbox_was_read_is_alerted_once() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let commit = renew(&alice, &conv);
    let early = alice.write(&conv, "early");
    bob.take(EntryKind::Application, &conv, &alice, &early)
        .unwrap();
    // The read ends without the commit: the server withholds it.
    bob.engine.whole_inbox_read().unwrap();
    bob.engine.whole_inbox_read().unwrap();
    let alerts = bob.engine.home.alerts(false).unwrap();
    assert_eq!(alerts.len(), 1, "{alerts:?}");
    assert_eq!(alerts[0].kind, "letters_withheld");
    assert!(alerts[0].detail.contains("epoch 2"), "{}", alerts[0].detail);
    // It still opens when the commit comes.
    let out = bob.take(EntryKind::Commit, &conv, &alice, commit.commit.as_slice());
    assert!(matches!(out, Ok(Applied::Commit { opened: 1 })), "{out:?}");
}
