//! Letters whose cached attachments a front end is still reading, so the
//! cache's budget never evicts them ([`crate::Client::hold_cached`]).
//!
//! The bridge caches the attachments a FETCH covers, then writes a long
//! literal a window at a time, taking the home back for each window: in
//! between, caching another letter (the next of the same FETCH, or
//! another session's) would otherwise evict what it still has to read,
//! and the literal, its length already sent, could only be cut off with
//! the connection.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};

/// How many holds each letter has.
#[derive(Clone, Default)]
pub(crate) struct Holds(Arc<Mutex<HashMap<i64, usize>>>);

/// A letter held: its cached attachments stay until this is dropped.
#[must_use = "the letter is held only while this lives"]
pub struct Held {
    holds: Holds,
    letter: i64,
}

impl Holds {
    pub(crate) fn hold(&self, letter: i64) -> Held {
        *self.counts().entry(letter).or_default() += 1;
        Held {
            holds: self.clone(),
            letter,
        }
    }

    /// The letters held now.
    pub(crate) fn letters(&self) -> Vec<i64> {
        self.counts().keys().copied().collect()
    }

    fn counts(&self) -> std::sync::MutexGuard<'_, HashMap<i64, usize>> {
        // A count is never left half changed: a panic elsewhere poisons
        // nothing this relies on.
        self.0.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        let mut counts = self.holds.counts();
        if let Some(n) = counts.get_mut(&self.letter) {
            *n -= 1;
            if *n == 0 {
                counts.remove(&self.letter);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_letter_is_held_until_its_last_hold_goes() {
        let holds = Holds::default();
        let first = holds.hold(7);
        let second = holds.hold(7);
        let other = holds.hold(9);
        let mut held = holds.letters();
        held.sort_unstable();
        assert_eq!(held, [7, 9]);
        drop(first);
        drop(other);
        assert_eq!(holds.letters(), [7]);
        drop(second);
        assert!(holds.letters().is_empty());
    }
}
