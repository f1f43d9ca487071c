//! When a letter waiting as a draft (its attachments not all uploaded and
//! linked) is tried again. Each try that leaves it waiting doubles the
//! wait, from [`FIRST`] to [`MOST`]: a server that keeps answering what it
//! should not (a blob it will not keep, an offset it lies about) costs a
//! long-running client (the bridge syncs every half second) one upload of
//! the files per wait, not one per sync. A one-shot command makes a fresh
//! client, so `valise sync` always tries at once.

use std::collections::HashMap;
use std::time::{Duration, Instant};
use valise_proto::MessageId;

/// The wait after the first try that left a draft waiting.
pub const FIRST: Duration = Duration::from_secs(5);
/// The longest wait: a draft held up by a server that was down goes
/// within this of its coming back.
pub const MOST: Duration = Duration::from_secs(5 * 60);

/// The drafts that waited, each with how many tries left it waiting and
/// when the next may be made.
#[derive(Default)]
pub struct DraftRetries(HashMap<MessageId, (u32, Instant)>);

impl DraftRetries {
    /// Whether draft `id` may be tried at `now`.
    pub fn due(&self, id: &MessageId, now: Instant) -> bool {
        self.0.get(id).is_none_or(|(_, at)| now >= *at)
    }

    /// A try at `now` left draft `id` waiting.
    pub fn waited(&mut self, id: MessageId, now: Instant) {
        let tries = self.0.get(&id).map_or(0, |(n, _)| n.saturating_add(1));
        let wait = FIRST.saturating_mul(1 << tries.min(16)).min(MOST);
        self.0.insert(id, (tries, now + wait));
    }

    /// Draft `id` went, or was dropped: nothing to wait for.
    pub fn done(&mut self, id: &MessageId) {
        self.0.remove(id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_wait_doubles_up_to_the_most_and_ends_when_the_draft_goes() {
        let mut retries = DraftRetries::default();
        let id = MessageId::from_bytes([7; 16]);
        let start = Instant::now();
        assert!(retries.due(&id, start), "a draft never tried is due");
        let mut now = start;
        let mut waits = Vec::new();
        for _ in 0..10 {
            retries.waited(id, now);
            let mut next = now;
            while !retries.due(&id, next) {
                next += Duration::from_secs(1);
            }
            waits.push((next - now).as_secs());
            now = next;
        }
        assert_eq!(waits, [5, 10, 20, 40, 80, 160, 300, 300, 300, 300]);
        retries.waited(id, now);
        retries.done(&id);
        assert!(retries.due(&id, now), "a draft that went waits no more");
        let other = MessageId::from_bytes([8; 16]);
        assert!(retries.due(&other, now), "one draft's waits are its own");
    }
}
