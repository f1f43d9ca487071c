//! Issue 9: a device's cost per letter does not grow with its history.
//! Sending (write, seal, the server's acceptance noted, the outbox entry
//! dropped) and receiving (open, count, store) are timed on sealed homes
//! on disk: one pair of devices in an empty conversation, another with
//! 100,000 letters already in theirs, in alternating rounds so that the
//! machine's drift falls on both. A timing on a shared machine, so run by
//! hand:
//!
//! ```sh
//! cargo test --release -p valise-client cost_per_letter -- --ignored --nocapture
//! ```

use super::*;
use std::time::{Duration, Instant};

const HISTORY: usize = 100_000;
const ROUNDS: usize = 10;
const LETTERS_PER_ROUND: usize = 100;

/// Alice and bob in a conversation of their own, on homes in `dir`.
struct Pair {
    alice: Dev,
    bob: Dev,
    conv: ConversationId,
}

impl Pair {
    fn new(dir: &std::path::Path) -> Self {
        let alice = Dev::on_disk(&dir.join("alice"), "alice");
        let bob = Dev::on_disk(&dir.join("bob"), "bob");
        Dev::introduce(&[&alice, &bob]);
        let conv = conversation(&alice, &[&bob]);
        Self { alice, bob, conv }
    }

    /// `HISTORY` letters of alice's, stored as each side stores them.
    fn fill(&self) {
        for (dev, outgoing) in [(&self.alice, true), (&self.bob, false)] {
            let home = &dev.engine.home;
            home.begin().unwrap();
            for n in 0..HISTORY {
                let old = letter(&format!("old {n}"));
                home.store_letter(&self.conv, self.alice.me(), &old, outgoing, 0)
                    .unwrap();
            }
            home.end(true).unwrap();
        }
    }

    /// Time spent sending and receiving `LETTERS_PER_ROUND` letters.
    fn exchange(&self) -> (Duration, Duration) {
        let Self { alice, bob, conv } = self;
        let (mut sending, mut receiving) = (Duration::ZERO, Duration::ZERO);
        for n in 0..LETTERS_PER_ROUND {
            let started = Instant::now();
            let letter = letter(&format!("letter {n}"));
            let home = &alice.engine.home;
            alice
                .engine
                .write_letter(&Target::Conversation(*conv), &letter)
                .unwrap();
            let entry = home.outbound(&letter.message_id).unwrap().unwrap();
            assert_eq!(alice.engine.seal_or_hold(entry).unwrap(), Written::Sealed);
            let sealed = home.outbound(&letter.message_id).unwrap().unwrap();
            alice.engine.note_accepted(&sealed).unwrap();
            home.drop_outbound(&[letter.message_id]).unwrap();
            sending += started.elapsed();
            let message = sealed.sealed.unwrap().ciphertext;
            let started = Instant::now();
            let out = bob.take(EntryKind::Application, conv, alice, &message);
            assert!(matches!(out, Ok(Applied::Letter)), "{out:?}");
            receiving += started.elapsed();
        }
        (sending, receiving)
    }
}

fn per_letter(d: Duration) -> f64 {
    d.as_secs_f64() * 1e6 / (ROUNDS * LETTERS_PER_ROUND) as f64
}

#[test]
#[ignore = "a timing: run by hand (see the module doc)"]
fn cost_per_letter_does_not_grow_with_history() {
    let dir = tempfile::tempdir().unwrap();
    let (empty, full) = (
        Pair::new(&dir.path().join("empty")),
        Pair::new(&dir.path().join("full")),
    );
    full.fill();
    // Warm-up: caches, the first epoch's counters.
    empty.exchange();
    full.exchange();
    let mut totals = [Duration::ZERO; 4];
    for _ in 0..ROUNDS {
        let (send_empty, receive_empty) = empty.exchange();
        let (send_full, receive_full) = full.exchange();
        for (t, d) in totals
            .iter_mut()
            .zip([send_empty, receive_empty, send_full, receive_full])
        {
            *t += d;
        }
    }
    let [send_empty, receive_empty, send_full, receive_full] = totals;
    let send = send_full.as_secs_f64() / send_empty.as_secs_f64();
    let receive = receive_full.as_secs_f64() / receive_empty.as_secs_f64();
    println!(
        "per letter, empty conversation vs {HISTORY} letters in it: sending {:.0} vs {:.0} µs \
         ({send:.2}×), receiving {:.0} vs {:.0} µs ({receive:.2}×)",
        per_letter(send_empty),
        per_letter(send_full),
        per_letter(receive_empty),
        per_letter(receive_full),
    );
    assert!(send <= 1.2 && receive <= 1.2, "{send:.2}× / {receive:.2}×");
}
