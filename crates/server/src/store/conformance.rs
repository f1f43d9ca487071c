//! The delivery log's contract, as tests any [`Store`] backend must pass
//! (in the manner of akd's storage tests): [`run_store_conformance`] runs
//! every check on fresh stores made by the backend's `open`, which opens
//! (or reopens, for the restart check) a store kept under a directory.
//!
//! Ordering, duplicates, compare-and-set on epochs, membership intervals,
//! cursors, garbage collection, the per-account quota and restart; the
//! audit log's appends, subtree hashes, checkpoints and queue.

// Test code: a failed unwrap is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use super::*;
use std::path::Path;

/// Opens the store kept under a directory (the same one again: a restart).
pub type Open<'a> = &'a dyn Fn(&Path) -> Box<dyn Store>;

/// One named check.
type Check = (&'static str, for<'a> fn(Open<'a>));

/// Runs every check of the contract.
pub fn run_store_conformance(open: Open<'_>) {
    let checks: &[Check] = &[
        ("commits compare and set the epoch", commits_compare_and_set),
        ("letters are idempotent and checked", letters_are_checked),
        (
            "a refusal skips the rest of its conversation",
            refusal_skips,
        ),
        ("inboxes read in log order, by count and bytes", ordering),
        ("members read only their intervals", intervals),
        ("cursors are checked and acknowledged", cursors),
        ("garbage is collected below every reader", garbage),
        ("the quota holds one account only", quota),
        ("a restart keeps the log and its positions", restart),
        ("the audit log appends in order and proves", audit_log),
        (
            "audit entries queued by another process, shown to accounts",
            audit_queue,
        ),
        ("the security desk is kept and replaced", security_desk),
    ];
    for (name, check) in checks {
        eprintln!("store conformance: {name}");
        check(open);
    }
}

fn fresh(open: Open<'_>) -> (tempfile::TempDir, Box<dyn Store>) {
    let dir = tempfile::tempdir().unwrap();
    let store = open(dir.path());
    (dir, store)
}

fn dev(user: &str, n: u8) -> DeviceAddress {
    DeviceAddress::new(UserId::parse(user).unwrap(), DeviceId::from_bytes([n; 8]))
}

fn conv(n: u8) -> ConversationId {
    ConversationId::from_bytes([n; 16])
}

fn one(store: &dyn Store, w: LogWrite) -> LogWritten {
    let mut batch = store.write_log(vec![w]).unwrap();
    assert_eq!(batch.written.len(), 1);
    batch.written.remove(0)
}

fn create(store: &dyn Store, id: ConversationId, roster: &[DeviceAddress]) {
    let w = LogWrite::Create(NewConversation {
        record: ConversationRecord {
            id,
            epoch: 0,
            ciphersuite: 0x4d,
            state: vec![0],
            roster: roster.to_vec(),
            group_info: vec![9],
        },
        created_by: roster[0].clone(),
        now_ms: 1,
    });
    let LogWritten::Created(r) = one(store, w) else {
        panic!("not a creation")
    };
    r.unwrap();
}

/// Commits `expected` → `expected + 1` with the new roster (joiners get a Welcome).
fn commit(
    store: &dyn Store,
    id: ConversationId,
    expected: u64,
    by: &DeviceAddress,
    roster: &[DeviceAddress],
    joiners: &[DeviceAddress],
) -> Result<(), StoreError> {
    let w = LogWrite::Commit(AppliedCommit {
        conversation: id,
        expected_epoch: expected,
        new_epoch: expected + 1,
        new_state: vec![expected as u8 + 1],
        new_roster: roster.to_vec(),
        new_group_info: vec![expected as u8 + 1],
        sender: by.clone(),
        commit: vec![0xc0, expected as u8],
        welcome: (!joiners.is_empty()).then(|| WelcomeDelivery {
            message: vec![0x3e],
            ratchet_tree: vec![0x7e],
            joiners: joiners.to_vec(),
        }),
        now_ms: 2,
    });
    let LogWritten::Committed(r) = one(store, w) else {
        panic!("not a commit")
    };
    r
}

fn letter(id: ConversationId, by: &DeviceAddress, n: u8, epoch: u64) -> NewMessage {
    NewMessage {
        conversation: id,
        sender: by.clone(),
        client_msg_id: MessageId::from_bytes([n; 16]),
        epoch,
        bytes: vec![n; 10],
        now_ms: 5,
    }
}

fn send(store: &dyn Store, letters: Vec<NewMessage>) -> Vec<LetterOutcome> {
    let LogWritten::Letters(o) = one(store, LogWrite::Letters(letters)) else {
        panic!("not letters")
    };
    o
}

fn read(store: &dyn Store, d: &DeviceAddress, after: Option<Position>) -> InboxRead {
    store.inbox(d, after, 1000, usize::MAX).unwrap()
}

fn ack(store: &dyn Store, d: &DeviceAddress, at: Position) {
    let LogWritten::Acked(r) = one(
        store,
        LogWrite::Ack {
            device: d.clone(),
            at,
        },
    ) else {
        panic!("not an ack")
    };
    r.unwrap();
}

fn bodies(read: &InboxRead) -> Vec<Vec<u8>> {
    read.entries.iter().map(|e| e.message.clone()).collect()
}

fn commits_compare_and_set(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let c = conv(1);
    create(store, c, std::slice::from_ref(&a));
    let again = LogWrite::Create(NewConversation {
        record: store.load_conversation(&c).unwrap().unwrap(),
        created_by: a.clone(),
        now_ms: 1,
    });
    assert!(matches!(
        one(store, again),
        LogWritten::Created(Err(StoreError::AlreadyExists))
    ));
    let both = [a.clone(), b.clone()];
    assert!(matches!(
        commit(store, c, 0, &b, &both, std::slice::from_ref(&b)),
        Err(StoreError::NotMember)
    ));
    commit(store, c, 0, &a, &both, std::slice::from_ref(&b)).unwrap();
    assert!(matches!(
        commit(store, c, 0, &a, &both, &[]),
        Err(StoreError::StaleEpoch { current: 1 })
    ));
    let rec = store.load_conversation(&c).unwrap().unwrap();
    assert_eq!((rec.epoch, rec.state, rec.roster.len()), (1, vec![1], 2));
    // The committer gets its commit echoed (crash recovery); the joiner
    // only its Welcome, with the tree.
    let echo = read(store, &a, None);
    assert_eq!(echo.entries.len(), 1);
    assert_eq!(echo.entries[0].kind, EntryKind::Commit);
    let joined = read(store, &b, None);
    assert_eq!(joined.entries.len(), 1);
    assert_eq!(joined.entries[0].kind, EntryKind::Welcome);
    assert_eq!(joined.entries[0].ratchet_tree, Some(vec![0x7e]));
    // Two racing commits in one batch: the second loses.
    let racing = |by: &DeviceAddress| {
        LogWrite::Commit(AppliedCommit {
            conversation: c,
            expected_epoch: 1,
            new_epoch: 2,
            new_state: vec![2],
            new_roster: both.to_vec(),
            new_group_info: vec![2],
            sender: by.clone(),
            commit: vec![0xc1],
            welcome: None,
            now_ms: 3,
        })
    };
    let batch = store.write_log(vec![racing(&a), racing(&b)]).unwrap();
    assert!(matches!(batch.written[0], LogWritten::Committed(Ok(()))));
    assert!(matches!(
        batch.written[1],
        LogWritten::Committed(Err(StoreError::StaleEpoch { current: 2 }))
    ));
}

fn letters_are_checked(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b, outsider) = (dev("alice@x.y", 1), dev("bob@x.y", 2), dev("eve@x.y", 3));
    let c = conv(1);
    create(store, c, &[a.clone(), b.clone()]);
    let out = send(store, vec![letter(c, &a, 1, 0), letter(c, &a, 1, 0)]);
    assert!(matches!(
        out[0],
        LetterOutcome::Accepted { recipients: 1, .. }
    ));
    // A retry says the fan-out and epoch now, for the sender's roster check.
    assert!(matches!(
        out[1],
        LetterOutcome::Duplicate {
            recipients: 1,
            epoch: 0
        }
    ));
    let out = send(store, vec![letter(c, &outsider, 2, 0)]);
    assert!(matches!(
        out[0],
        LetterOutcome::Refused(StoreError::NotMember)
    ));
    let out = send(store, vec![letter(c, &a, 3, 7)]);
    assert!(matches!(
        out[0],
        LetterOutcome::Refused(StoreError::StaleEpoch { current: 0 })
    ));
    let out = send(store, vec![letter(conv(9), &a, 4, 0)]);
    assert!(matches!(
        out[0],
        LetterOutcome::Refused(StoreError::NotFound)
    ));
    // A retry in a later batch is still a duplicate; bob has one letter.
    assert!(matches!(
        send(store, vec![letter(c, &a, 1, 0)])[0],
        LetterOutcome::Duplicate { .. }
    ));
    assert_eq!(bodies(&read(store, &b, None)), vec![vec![1; 10]]);
    // The same id from another sender is another letter.
    assert!(matches!(
        send(store, vec![letter(c, &b, 1, 0)])[0],
        LetterOutcome::Accepted { .. }
    ));
}

fn refusal_skips(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let (c1, c2) = (conv(1), conv(2));
    create(store, c1, &[a.clone(), b.clone()]);
    create(store, c2, &[a.clone(), b.clone()]);
    let out = send(
        store,
        vec![
            letter(c1, &a, 1, 0),
            letter(c1, &a, 2, 5),
            letter(c2, &a, 3, 0),
            letter(c1, &a, 4, 0),
        ],
    );
    assert!(matches!(out[0], LetterOutcome::Accepted { .. }));
    assert!(matches!(out[1], LetterOutcome::Refused(_)));
    assert!(matches!(out[2], LetterOutcome::Accepted { .. }));
    assert!(matches!(out[3], LetterOutcome::Skipped));
    assert_eq!(
        bodies(&read(store, &b, None)),
        vec![vec![1; 10], vec![3; 10]]
    );
}

fn ordering(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let (c1, c2) = (conv(1), conv(2));
    create(store, c1, &[a.clone(), b.clone()]);
    create(store, c2, &[a.clone(), b.clone()]);
    let letters = (0..6)
        .map(|i| letter(if i % 2 == 0 { c1 } else { c2 }, &a, i, 0))
        .collect();
    let out = send(store, letters);
    let seqs: Vec<u64> = out
        .iter()
        .map(|o| match o {
            LetterOutcome::Accepted { seq, .. } => *seq,
            other => panic!("{other:?}"),
        })
        .collect();
    assert!(seqs.windows(2).all(|w| w[0] < w[1]), "{seqs:?}");
    // By count: two, then the rest from the cursor.
    let p1 = store.inbox(&b, None, 2, usize::MAX).unwrap();
    assert!(p1.more);
    assert_eq!(bodies(&p1), vec![vec![0; 10], vec![1; 10]]);
    assert_eq!(p1.next.seq, seqs[1]);
    let p2 = read(store, &b, Some(p1.next));
    assert!(!p2.more);
    assert_eq!(p2.entries.len(), 4);
    assert!(p2.entries.windows(2).all(|w| w[0].seq < w[1].seq));
    // By bytes: a page ends past the limit but holds at least one entry.
    let small = store.inbox(&b, None, 1000, 15).unwrap();
    assert_eq!(small.entries.len(), 1);
    assert!(small.more);
    let tiny = store.inbox(&b, None, 1000, 1).unwrap();
    assert_eq!(tiny.entries.len(), 1);
    // The sender does not read its own letters back, but its cursor passes them.
    let own = read(store, &a, None);
    assert!(own.entries.is_empty());
    assert_eq!(own.next.seq, seqs[5]);
    assert_eq!(store.inbox_count(&b, None).unwrap(), 6);
    assert_eq!(store.inbox_count(&b, Some(p1.next)).unwrap(), 4);
    assert_eq!(store.inbox_count(&a, None).unwrap(), 0);
}

fn intervals(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b, c) = (dev("alice@x.y", 1), dev("bob@x.y", 2), dev("carol@x.y", 3));
    let id = conv(1);
    create(store, id, &[a.clone(), b.clone()]);
    send(store, vec![letter(id, &a, 1, 0)]);
    // Carol joins at epoch 1: nothing from before, her Welcome, then letters.
    commit(
        store,
        id,
        0,
        &a,
        &[a.clone(), b.clone(), c.clone()],
        std::slice::from_ref(&c),
    )
    .unwrap();
    send(store, vec![letter(id, &a, 2, 1)]);
    let carol = read(store, &c, None);
    let kinds: Vec<EntryKind> = carol.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EntryKind::Welcome, EntryKind::Application]);
    assert_eq!(carol.entries[1].message, vec![2; 10]);
    // Bob is removed at epoch 2: he reads his removal, nothing after.
    commit(store, id, 1, &a, &[a.clone(), c.clone()], &[]).unwrap();
    send(store, vec![letter(id, &a, 3, 2)]);
    let bob = read(store, &b, None);
    let kinds: Vec<EntryKind> = bob.entries.iter().map(|e| e.kind).collect();
    assert_eq!(
        kinds,
        vec![
            EntryKind::Application,
            EntryKind::Commit,
            EntryKind::Application,
            EntryKind::Commit
        ]
    );
    assert!(matches!(
        send(store, vec![letter(id, &b, 4, 2)])[0],
        LetterOutcome::Refused(StoreError::NotMember)
    ));
    // Back in at epoch 3: only what follows.
    commit(
        store,
        id,
        2,
        &a,
        &[a.clone(), b.clone(), c.clone()],
        std::slice::from_ref(&b),
    )
    .unwrap();
    send(store, vec![letter(id, &a, 5, 3)]);
    let after = read(store, &b, Some(bob.next));
    let kinds: Vec<EntryKind> = after.entries.iter().map(|e| e.kind).collect();
    assert_eq!(kinds, vec![EntryKind::Welcome, EntryKind::Application]);
    assert_eq!(after.entries[1].message, vec![5; 10]);
}

fn cursors(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let id = conv(1);
    create(store, id, &[a.clone(), b.clone()]);
    send(store, (0..4).map(|i| letter(id, &a, i, 0)).collect());
    let first = store.inbox(&b, None, 2, usize::MAX).unwrap();
    // Unacknowledged, a read without a cursor starts over.
    assert_eq!(read(store, &b, None).entries.len(), 4);
    ack(store, &b, first.next);
    assert_eq!(
        bodies(&read(store, &b, None)),
        vec![vec![2; 10], vec![3; 10]]
    );
    // Acknowledgements never go back.
    ack(store, &b, Position::ORIGIN);
    assert_eq!(read(store, &b, None).entries.len(), 2);
    // A position this log never handed out is refused: a wrong chain, a
    // row beyond the head.
    let mut forged = first.next;
    forged.chain[0] ^= 1;
    assert!(matches!(
        store.inbox(&b, Some(forged), 10, usize::MAX),
        Err(StoreError::UnknownPosition)
    ));
    let beyond = Position {
        seq: first.next.seq + 100,
        chain: first.next.chain,
    };
    assert!(matches!(
        store.inbox(&b, Some(beyond), 10, usize::MAX),
        Err(StoreError::UnknownPosition)
    ));
    assert!(matches!(
        store.inbox_count(&b, Some(forged)),
        Err(StoreError::UnknownPosition)
    ));
    // The origin is always known; an unknown device reads nothing.
    assert_eq!(read(store, &b, Some(Position::ORIGIN)).entries.len(), 4);
    assert!(read(store, &dev("nobody@x.y", 9), None).entries.is_empty());
}

fn garbage(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    let (a, b, c) = (dev("alice@x.y", 1), dev("bob@x.y", 2), dev("carol@x.y", 3));
    let id = conv(1);
    create(store, id, &[a.clone(), b.clone(), c.clone()]);
    send(store, (0..3).map(|i| letter(id, &a, i, 0)).collect());
    // Bob read everything; carol nothing: nothing goes.
    let bob = read(store, &b, None);
    ack(store, &b, bob.next);
    store.collect_garbage(1000).unwrap();
    assert_eq!(read(store, &c, None).entries.len(), 3);
    // Carol is removed before reading: the rows wait for her to read her removal.
    commit(store, id, 0, &a, &[a.clone(), b.clone()], &[]).unwrap();
    ack(store, &a, read(store, &a, None).next);
    ack(store, &b, read(store, &b, None).next);
    store.collect_garbage(1000).unwrap();
    let carol = read(store, &c, None);
    assert_eq!(carol.entries.len(), 4);
    ack(store, &c, carol.next);
    assert!(store.collect_garbage(1000).unwrap() >= 4);
    // Gone for everyone, and a retry of a collected letter is still a duplicate.
    assert!(read(store, &b, Some(Position::ORIGIN)).entries.is_empty());
    assert!(matches!(
        send(store, vec![letter(id, &a, 0, 1)])[0],
        LetterOutcome::Duplicate { .. }
    ));
    // A cursor behind what was acknowledged (a device's home went back)
    // goes on from the acknowledged position.
    assert!(read(store, &b, Some(bob.next)).entries.is_empty());
}

fn quota(open: Open<'_>) {
    let (_d, store) = fresh(open);
    let store = store.as_ref();
    store.set_account_quota(25);
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let id = conv(1);
    create(store, id, &[a.clone(), b.clone()]);
    let out = send(store, (0..3).map(|i| letter(id, &a, i, 0)).collect());
    assert!(matches!(out[1], LetterOutcome::Accepted { .. }));
    assert!(matches!(
        out[2],
        LetterOutcome::Refused(StoreError::QuotaExceeded)
    ));
    // Only alice's account is full.
    assert!(matches!(
        send(store, vec![letter(id, &b, 9, 0)])[0],
        LetterOutcome::Accepted { .. }
    ));
    // Commits collected make no room: only letters count.
    let solo = conv(2);
    create(store, solo, std::slice::from_ref(&a));
    for epoch in 0..3 {
        commit(store, solo, epoch, &a, std::slice::from_ref(&a), &[]).unwrap();
    }
    ack(store, &a, read(store, &a, None).next);
    store.collect_garbage(1000).unwrap();
    assert!(matches!(
        send(store, vec![letter(id, &a, 7, 0)])[0],
        LetterOutcome::Refused(StoreError::QuotaExceeded)
    ));
    // Once read and collected, there is room again.
    ack(store, &b, read(store, &b, None).next);
    ack(store, &a, read(store, &a, None).next);
    store.collect_garbage(1000).unwrap();
    assert!(matches!(
        send(store, vec![letter(id, &a, 3, 0)])[0],
        LetterOutcome::Accepted { .. }
    ));
}

fn restart(open: Open<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dev("alice@x.y", 1), dev("bob@x.y", 2));
    let id = conv(1);
    let (first, seq) = {
        let store = open(dir.path());
        create(store.as_ref(), id, &[a.clone(), b.clone()]);
        let out = send(
            store.as_ref(),
            vec![letter(id, &a, 1, 0), letter(id, &a, 2, 0)],
        );
        let LetterOutcome::Accepted { seq, .. } = out[1] else {
            panic!("{out:?}")
        };
        let first = store.inbox(&b, None, 1, usize::MAX).unwrap();
        ack(store.as_ref(), &b, first.next);
        (first, seq)
    };
    let store = open(dir.path());
    let store = store.as_ref();
    // The acknowledged position, the positions handed out, the epoch and
    // the duplicates all survive; new rows come after the old ones.
    assert_eq!(bodies(&read(store, &b, None)), vec![vec![2; 10]]);
    assert_eq!(read(store, &b, Some(first.next)).entries.len(), 1);
    assert_eq!(store.load_conversation(&id).unwrap().unwrap().epoch, 0);
    assert!(matches!(
        send(store, vec![letter(id, &a, 2, 0)])[0],
        LetterOutcome::Duplicate { .. }
    ));
    let out = send(store, vec![letter(id, &a, 3, 0)]);
    assert!(matches!(out[0], LetterOutcome::Accepted { seq: s, .. } if s > seq));
    commit(store, id, 0, &a, &[a.clone(), b.clone()], &[]).unwrap();
}

/// Appends `n` entries named after their numbers, as the audit writer does.
fn append_audit(store: &dyn Store, tree: &mut valise_proto::tlog::Frontier, n: u64) {
    let first = tree.size();
    let entries: Vec<Vec<u8>> = (first..first + n)
        .map(|i| format!("e{i}").into_bytes())
        .collect();
    let nodes = entries.iter().flat_map(|e| tree.push(e)).collect();
    store
        .append_audit(&AuditBatch {
            first,
            entries,
            nodes,
            dequeued: None,
            checkpoint: Some(StoredCheckpoint {
                size: tree.size(),
                note: format!("note {}", tree.size()),
                signed_at_ms: 1,
            }),
            accounts: vec![],
            alerts: vec![],
        })
        .unwrap();
}

fn audit_log(open: Open<'_>) {
    use valise_proto::tlog::{self, Frontier};
    let dir = tempfile::tempdir().unwrap();
    let mut tree = Frontier::new();
    {
        let store = open(dir.path());
        assert_eq!(store.audit_size().unwrap(), 0);
        assert_eq!(store.latest_audit_checkpoint().unwrap(), None);
        append_audit(store.as_ref(), &mut tree, 5);
        append_audit(store.as_ref(), &mut tree, 8);
        // A batch that does not start at the end is refused whole.
        let stale = AuditBatch {
            first: 3,
            entries: vec![b"late".to_vec()],
            ..AuditBatch::default()
        };
        assert!(matches!(
            store.append_audit(&stale),
            Err(StoreError::Changed(_))
        ));
    }
    // After a restart: the size, the frontier, the entries and every proof
    // come from stored subtrees and agree with the tree in memory.
    let store = open(dir.path());
    let size = store.audit_size().unwrap();
    assert_eq!(size, 13);
    let frontier = store.audit_nodes(&tlog::range_subtrees(0, size)).unwrap();
    assert_eq!(
        Frontier::from_parts(size, frontier).unwrap().root(),
        tree.root()
    );
    let entries = store.audit_entries(4, 3).unwrap();
    assert_eq!(
        entries,
        vec![
            (4, b"e4".to_vec()),
            (5, b"e5".to_vec()),
            (6, b"e6".to_vec())
        ]
    );
    assert_eq!(store.audit_entries(13, 10).unwrap(), vec![]);
    let range = |(a, b)| {
        tlog::fold_subtrees(&store.audit_nodes(&tlog::range_subtrees(a, b)).unwrap()).unwrap()
    };
    for i in 0..size {
        let proof: Vec<_> = tlog::inclusion_plan(i, size)
            .unwrap()
            .into_iter()
            .map(range)
            .collect();
        tlog::verify_inclusion(&tree.root(), size, i, format!("e{i}").as_bytes(), &proof).unwrap();
    }
    let old = range((0, 5));
    let proof: Vec<_> = tlog::consistency_plan(5, size)
        .unwrap()
        .into_iter()
        .map(range)
        .collect();
    tlog::verify_consistency((5, &old), (size, &tree.root()), &proof).unwrap();
    // A subtree not complete yet is not there.
    assert!(matches!(
        store.audit_nodes(&[tlog::Subtree { level: 4, index: 0 }]),
        Err(StoreError::NotFound)
    ));
    assert_eq!(
        store.latest_audit_checkpoint().unwrap().as_deref(),
        Some("note 13")
    );
    assert_eq!(
        store.audit_checkpoints().unwrap(),
        vec!["note 5", "note 13"]
    );
}

fn audit_queue(open: Open<'_>) {
    let (_dir, store) = fresh(open);
    store.queue_audit(b"first").unwrap();
    store.queue_audit(b"second").unwrap();
    // Queued entries count toward the position before they are appended.
    assert_eq!(store.audit_position().unwrap(), 2);
    let queued = store.queued_audit(10).unwrap();
    assert_eq!(
        queued.iter().map(|(_, b)| b.as_slice()).collect::<Vec<_>>(),
        vec![b"first".as_slice(), b"second"]
    );
    assert_eq!(store.queued_audit(1).unwrap().len(), 1);
    // Taken into the log with the same transaction that appends them.
    let mut tree = valise_proto::tlog::Frontier::new();
    let nodes = queued.iter().flat_map(|(_, e)| tree.push(e)).collect();
    store
        .append_audit(&AuditBatch {
            first: 0,
            entries: queued.iter().map(|(_, e)| e.clone()).collect(),
            nodes,
            dequeued: Some(queued[1].0),
            checkpoint: None,
            accounts: vec![(UserId::parse("alice@x.y").unwrap(), 1)],
            alerts: vec![1],
        })
        .unwrap();
    let alice = UserId::parse("alice@x.y").unwrap();
    assert_eq!(store.audit_account(&alice, 0, 2, 10).unwrap(), vec![1]);
    // The alerts index names entries, read back with their bytes.
    assert_eq!(
        store.alerts_from(0, 10).unwrap(),
        vec![(1, b"second".to_vec())]
    );
    assert!(store.alerts_from(2, 10).unwrap().is_empty());
    assert!(store.audit_account(&alice, 0, 1, 10).unwrap().is_empty());
    assert!(store.audit_account(&alice, 2, 9, 10).unwrap().is_empty());
    assert_eq!(store.queued_audit(10).unwrap(), vec![]);
    assert_eq!(store.audit_size().unwrap(), 2);
    assert_eq!(store.audit_position().unwrap(), 2);
}

fn security_desk(open: Open<'_>) {
    let dir = tempfile::tempdir().unwrap();
    let (soc, mallory) = (
        UserId::parse("soc@x.y").unwrap(),
        UserId::parse("mallory@x.y").unwrap(),
    );
    {
        let store = open(dir.path());
        assert_eq!(store.security_desk().unwrap(), None);
        assert_eq!(store.set_security_desk(&soc, 1).unwrap(), None);
        assert_eq!(store.set_security_desk(&mallory, 2).unwrap(), Some(soc));
    }
    let store = open(dir.path());
    assert_eq!(store.security_desk().unwrap(), Some(mallory));
}
