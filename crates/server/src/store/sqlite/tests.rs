//! The store against a real SQLite file.

use super::*;

fn user(s: &str) -> UserId {
    UserId::parse(s).unwrap()
}

fn addr(u: &str, d: u8) -> DeviceAddress {
    DeviceAddress::new(user(u), DeviceId::from_bytes([d; 8]))
}

/// Key packages in these tests expire long after [`NOW_S`].
const NOW_S: u64 = 1_000;
const LATER_S: u64 = 2_000_000_000;

fn kp(bytes: Vec<u8>) -> NewKeyPackage {
    NewKeyPackage {
        bytes,
        not_after: LATER_S,
    }
}

fn open() -> (tempfile::TempDir, SqliteStore) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("t.db")).unwrap();
    (dir, store)
}

/// Enrols a device with its own invite; `n` one-time packages.
fn enrol(store: &SqliteStore, device: &DeviceAddress, n: usize) {
    let hash = [device.device.as_bytes()[0]; 32];
    store
        .create_invite(hash, &device.user, 0, 1_000, false)
        .unwrap();
    store
        .enroll(&Enrollment {
            code_hash: hash,
            device: device.clone(),
            signature_key: vec![device.device.as_bytes()[0]; 32],
            key_packages: (0..n).map(|i| kp(vec![1, i as u8])).collect(),
            last_resort: kp(vec![9]),
            now_ms: 10,
        })
        .unwrap();
}

/// Stores `by`'s approval of `device` (the store does not check signatures).
fn approve(store: &SqliteStore, device: &DeviceAddress, by: &DeviceAddress) {
    let number = store.device(device).unwrap().unwrap().number;
    store
        .approve_device(&NewApproval {
            device: device.clone(),
            number,
            by: by.device,
            signature: vec![7; 64],
            now_ms: 20,
        })
        .unwrap();
}

fn conversation(store: &SqliteStore, id: u8, roster: Vec<DeviceAddress>) -> ConversationId {
    let cid = ConversationId::from_bytes([id; 16]);
    store
        .write_log(vec![LogWrite::Create(NewConversation {
            record: ConversationRecord {
                id: cid,
                epoch: 0,
                ciphersuite: 0x4d,
                state: vec![0],
                roster: roster.clone(),
                group_info: vec![9],
            },
            created_by: roster[0].clone(),
            now_ms: 1,
        })])
        .unwrap();
    cid
}

fn msg(c: ConversationId, sender: &DeviceAddress, id: u8, epoch: u64) -> NewMessage {
    NewMessage {
        conversation: c,
        sender: sender.clone(),
        client_msg_id: MessageId::from_bytes([id; 16]),
        epoch,
        bytes: vec![id; 10],
        now_ms: 5,
    }
}

#[test]
fn invites_are_single_use_and_expire() {
    let (_d, store) = open();
    let alice = addr("alice@x.y", 1);
    store
        .create_invite([7; 32], &alice.user, 0, 100, false)
        .unwrap();
    let mut e = Enrollment {
        code_hash: [7; 32],
        device: alice.clone(),
        signature_key: vec![1; 32],
        key_packages: vec![kp(vec![1])],
        last_resort: kp(vec![2]),
        now_ms: 200,
    };
    // Expired.
    assert!(matches!(store.enroll(&e), Err(StoreError::InvalidInvite)));
    e.now_ms = 50;
    // Another user cannot use it.
    let mut other = e.clone();
    other.device = addr("bob@x.y", 2);
    assert!(matches!(
        store.enroll(&other),
        Err(StoreError::InvalidInvite)
    ));
    store.enroll(&e).unwrap();
    // Used.
    let mut again = e.clone();
    again.device = addr("alice@x.y", 3);
    assert!(matches!(
        store.enroll(&again),
        Err(StoreError::InvalidInvite)
    ));
    // A taken device id rolls the invite back: it can be used once more.
    store
        .create_invite([8; 32], &alice.user, 0, 100, false)
        .unwrap();
    let mut dup = e.clone();
    dup.code_hash = [8; 32];
    assert!(matches!(store.enroll(&dup), Err(StoreError::AlreadyExists)));
    dup.device = addr("alice@x.y", 4);
    store.enroll(&dup).unwrap();
    assert_eq!(store.user(&alice.user).unwrap().devices.len(), 2);
    assert_eq!(
        store.device(&alice).unwrap().map(|d| d.signature_key),
        Some(vec![1; 32])
    );
}

#[test]
fn claim_takes_one_time_then_last_resort() {
    let (_d, store) = open();
    let alice = addr("alice@x.y", 1);
    let (b1, b2) = (addr("bob@x.y", 2), addr("bob@x.y", 3));
    enrol(&store, &alice, 1);
    enrol(&store, &b1, 2);
    enrol(&store, &b2, 1);
    approve(&store, &b2, &b1);
    let c = store
        .claim_key_packages(&b1.user, &[], &alice, NOW_S)
        .unwrap();
    assert_eq!(c.len(), 2);
    assert!(c.iter().all(|p| !p.last_resort));
    let c = store
        .claim_key_packages(&b1.user, &[], &alice, NOW_S)
        .unwrap();
    let by_dev = |d: &DeviceAddress| c.iter().find(|p| p.device == d.device).unwrap().clone();
    assert!(!by_dev(&b1).last_resort);
    assert!(by_dev(&b2).last_resort);
    assert_eq!(by_dev(&b2).bytes, vec![9]);
    // The last-resort package stays.
    let c = store
        .claim_key_packages(&b1.user, &[b1.device], &alice, NOW_S)
        .unwrap();
    assert_eq!(c.len(), 1);
    assert!(c[0].last_resort && c[0].device == b2.device);
    // Own device skipped; unknown user.
    assert!(
        store
            .claim_key_packages(&alice.user, &[], &alice, NOW_S)
            .unwrap()
            .is_empty()
    );
    assert!(matches!(
        store.claim_key_packages(&user("nobody@x.y"), &[], &alice, NOW_S),
        Err(StoreError::NotFound)
    ));
    // Restock: replaces the last-resort one.
    assert_eq!(
        store
            .add_key_packages(&b2, &[kp(vec![5])], Some(&kp(vec![6])), false)
            .unwrap(),
        1
    );
    let c = store
        .claim_key_packages(&b1.user, &[b1.device], &alice, NOW_S)
        .unwrap();
    assert_eq!(c[0].bytes, vec![5]);
    let c = store
        .claim_key_packages(&b1.user, &[b1.device], &alice, NOW_S)
        .unwrap();
    assert_eq!((c[0].bytes.clone(), c[0].last_resort), (vec![6], true));
}

#[test]
fn sqlite_passes_the_store_conformance_suite() {
    crate::store::conformance::run_store_conformance(&|dir| {
        Box::new(SqliteStore::open(&dir.join("t.db")).unwrap())
    });
}

#[test]
fn purge_forgets_expired_tokens_and_old_message_ids() {
    let (_d, store) = open();
    let (a, b) = (addr("alice@x.y", 1), addr("bob@x.y", 2));
    enrol(&store, &a, 1);
    enrol(&store, &b, 1);
    store.create_token([1; 32], &a, 100).unwrap();
    store.create_token([2; 32], &a, 10_000).unwrap();
    let c = conversation(&store, 1, vec![a.clone(), b.clone()]);
    let mut old = msg(c, &a, 1, 0);
    old.now_ms = 3;
    store
        .write_log(vec![LogWrite::Letters(vec![old, msg(c, &a, 2, 0)])])
        .unwrap();
    let purged = store.purge(1_000, 4).unwrap();
    assert_eq!(
        purged,
        Purged {
            tokens: 1,
            message_ids: 1
        }
    );
    assert!(store.token_device(&[1; 32], 50).unwrap().is_none());
    assert!(store.token_device(&[2; 32], 50).unwrap().is_some());
    // Within the window, letter 2 stays a duplicate; letter 1 is new again.
    let again = store
        .write_log(vec![LogWrite::Letters(vec![
            msg(c, &a, 2, 0),
            msg(c, &a, 1, 0),
        ])])
        .unwrap();
    let LogWritten::Letters(out) = &again.written[0] else {
        panic!("not letters")
    };
    assert!(matches!(out[0], LetterOutcome::Duplicate { .. }));
    assert!(matches!(out[1], LetterOutcome::Accepted { .. }));
    assert_eq!(store.purge(1_000, 4).unwrap(), Purged::default());
}

#[test]
fn reopening_keeps_data_and_schema() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    {
        let store = SqliteStore::open(&path).unwrap();
        enrol(&store, &addr("alice@x.y", 1), 1);
    }
    let store = SqliteStore::open(&path).unwrap();
    assert_eq!(store.list_users().unwrap().len(), 1);
}

#[test]
fn directory_queue_is_written_with_the_enrolment_and_cleared_up_to_a_position() {
    let (_d, store) = open();
    assert_eq!(store.directory_pending().unwrap(), (vec![], 0));
    enrol(&store, &addr("alice@mfa.example", 1), 1);
    enrol(&store, &addr("bob@mfa.example", 2), 1);
    enrol(&store, &addr("alice@mfa.example", 3), 1);
    let (users, up_to) = store.directory_pending().unwrap();
    assert_eq!(
        users,
        vec![user("alice@mfa.example"), user("bob@mfa.example")]
    );
    assert_eq!(up_to, 3);
    // A failed enrolment queues nothing.
    let bad = Enrollment {
        code_hash: [0xee; 32],
        device: addr("carol@mfa.example", 4),
        signature_key: vec![4; 32],
        key_packages: vec![kp(vec![1])],
        last_resort: kp(vec![9]),
        now_ms: 10,
    };
    assert!(store.enroll(&bad).is_err());
    let seq = store
        .mark_directory_pending(&user("bob@mfa.example"), 11)
        .unwrap();
    assert_eq!(seq, 4);
    store.clear_directory_pending(3).unwrap();
    assert_eq!(
        store.directory_pending().unwrap(),
        (vec![user("bob@mfa.example")], 4)
    );
    store.clear_directory_pending(4).unwrap();
    assert_eq!(store.directory_pending().unwrap(), (vec![], 0));
    // Positions never come back after a clear.
    assert_eq!(
        store
            .mark_directory_pending(&user("bob@mfa.example"), 12)
            .unwrap(),
        5
    );
}

fn statuses(store: &SqliteStore, user: &str) -> Vec<(u8, u64, Status, u32)> {
    store
        .user(&self::user(user))
        .unwrap()
        .devices
        .iter()
        .map(|d| (d.device.as_bytes()[0], d.number, d.status, d.generation))
        .collect()
}

fn revocation(
    device: &DeviceAddress,
    at: Option<u64>,
    by: Option<&DeviceAddress>,
) -> NewRevocation {
    NewRevocation {
        device: device.clone(),
        at,
        by: by.map(|b| (b.device, vec![8; 64])),
        now_ms: 30,
    }
}

#[test]
fn the_first_device_founds_the_identity_and_the_others_wait_for_approval() {
    use Status::*;
    let (_d, store) = open();
    let (a, b, c) = (
        addr("alice@x.y", 1),
        addr("alice@x.y", 2),
        addr("alice@x.y", 3),
    );
    for d in [&a, &b, &c] {
        enrol(&store, d, 1);
    }
    let u = store.user(&a.user).unwrap();
    assert_eq!(u.identity.key.as_bytes(), &[1; 32]);
    assert_eq!(u.identity.generation, 1);
    assert_eq!(
        statuses(&store, "alice@x.y"),
        vec![(1, 0, Approved, 1), (2, 1, Pending, 1), (3, 2, Pending, 1)]
    );

    // An approval counts only for a pending device under its number, by an
    // approved device.
    let mut ap = NewApproval {
        device: b.clone(),
        number: 2,
        by: a.device,
        signature: vec![7; 64],
        now_ms: 20,
    };
    assert!(matches!(
        store.approve_device(&ap),
        Err(StoreError::Changed(_))
    ));
    ap.number = 1;
    ap.by = c.device;
    assert!(matches!(
        store.approve_device(&ap),
        Err(StoreError::Changed(_))
    ));
    ap.by = a.device;
    let queued = store.approve_device(&ap).unwrap();
    assert_eq!(store.directory_pending().unwrap().1, queued);
    assert!(matches!(
        store.approve_device(&ap),
        Err(StoreError::Changed(_))
    ));
    let approved = store.device(&b).unwrap().unwrap();
    assert_eq!(approved.status, Approved);
    assert_eq!(
        approved.approval,
        Some(valise_directory::Approval {
            by: a.device,
            signature: valise_directory::SignatureKey(vec![7; 64]),
        })
    );

    // A revocation is at the next number, by an approved device; it ends
    // the device's tokens.
    store.create_token([5; 32], &c, i64::MAX).unwrap();
    for bad in [
        revocation(&c, Some(2), Some(&b)),
        revocation(&c, Some(3), Some(&c)),
    ] {
        assert!(matches!(
            store.revoke_device(&bad),
            Err(StoreError::Changed(_))
        ));
    }
    assert_eq!(store.revoked_count().unwrap(), 0);
    store
        .revoke_device(&revocation(&c, Some(3), Some(&b)))
        .unwrap();
    assert!(store.token_device(&[5; 32], 0).unwrap().is_none());
    let revoked = store.device(&c).unwrap().unwrap();
    assert_eq!(revoked.status, Revoked);
    let rv = revoked.revocation.unwrap();
    assert_eq!((rv.at, rv.by), (3, Some(b.device)));
    assert_eq!(revoked.revoked_at_ms, Some(30));
    assert_eq!(store.revoked_count().unwrap(), 1);
    assert_eq!(store.revoked_devices().unwrap(), vec![c.clone()]);
    assert!(matches!(
        store.revoke_device(&revocation(&c, None, None)),
        Err(StoreError::Changed(_))
    ));
    assert!(matches!(
        store.revoke_device(&revocation(&addr("alice@x.y", 9), None, None)),
        Err(StoreError::NotFound)
    ));
    // The administrator's: unsigned, at the current next number.
    store.revoke_device(&revocation(&a, None, None)).unwrap();
    let rv = store.device(&a).unwrap().unwrap().revocation.unwrap();
    assert_eq!((rv.at, rv.by, rv.signature), (3, None, None));
    assert_eq!(store.revoked_count().unwrap(), 2);
}

#[test]
fn a_reset_founds_a_new_generation_and_revokes_every_older_device() {
    use Status::*;
    let (_d, store) = open();
    let (a, b, c) = (
        addr("alice@x.y", 1),
        addr("alice@x.y", 2),
        addr("alice@x.y", 3),
    );
    for d in [&a, &b, &c] {
        enrol(&store, d, 2);
    }
    store
        .revoke_device(&revocation(&c, Some(3), Some(&a)))
        .unwrap();
    store.create_token([5; 32], &a, i64::MAX).unwrap();
    store
        .create_invite([0x40; 32], &a.user, 0, 1_000, true)
        .unwrap();
    assert!(store.check_invite(&[0x40; 32], &a.user, 10).unwrap());
    assert!(matches!(
        store.check_invite(&[0x40; 32], &user("bob@x.y"), 10),
        Err(StoreError::InvalidInvite)
    ));
    let n = addr("alice@x.y", 4);
    let enrolled = store
        .enroll(&Enrollment {
            code_hash: [0x40; 32],
            device: n.clone(),
            signature_key: vec![4; 32],
            key_packages: vec![kp(vec![4])],
            last_resort: kp(vec![5]),
            now_ms: 40,
        })
        .unwrap();
    assert_eq!(
        (enrolled.number, enrolled.generation, enrolled.status),
        (3, 2, Approved)
    );
    let u = store.user(&a.user).unwrap();
    assert_eq!(
        (u.identity.key.as_bytes(), u.identity.generation),
        (&[4u8; 32][..], 2)
    );
    assert_eq!(
        statuses(&store, "alice@x.y"),
        vec![
            (1, 0, Revoked, 1),
            (2, 1, Revoked, 1),
            (3, 2, Revoked, 1),
            (4, 3, Approved, 2)
        ]
    );
    // Unsigned, at the new device's number; an earlier revocation stays.
    let rv = |d: &DeviceAddress| store.device(d).unwrap().unwrap().revocation.unwrap();
    assert_eq!((rv(&a).at, rv(&a).by), (3, None));
    assert_eq!((rv(&c).at, rv(&c).by), (3, Some(a.device)));
    assert!(store.token_device(&[5; 32], 0).unwrap().is_none());
    // Only the new device's key packages are left.
    let claimed = store
        .claim_key_packages(&a.user, &[], &addr("bob@x.y", 9), NOW_S)
        .unwrap();
    assert_eq!(claimed.len(), 1);
    assert_eq!((claimed[0].device, &claimed[0].bytes), (n.device, &vec![4]));
    // A later ordinary invite enrols a pending device of generation 2.
    enrol(&store, &addr("alice@x.y", 5), 1);
    assert_eq!(statuses(&store, "alice@x.y")[4], (5, 4, Pending, 2));
}

#[test]
fn claims_skip_devices_not_approved_and_packages_that_expired() {
    let (_d, store) = open();
    let alice = addr("alice@x.y", 1);
    let (b1, b2, b3) = (addr("bob@x.y", 2), addr("bob@x.y", 3), addr("bob@x.y", 4));
    enrol(&store, &alice, 1);
    enrol(&store, &b1, 0);
    enrol(&store, &b2, 1);
    enrol(&store, &b3, 1);
    approve(&store, &b3, &b1);
    store.revoke_device(&revocation(&b3, None, None)).unwrap();
    let claim = || {
        store
            .claim_key_packages(&b1.user, &[], &alice, NOW_S)
            .unwrap()
            .into_iter()
            .map(|c| (c.device.as_bytes()[0], c.bytes, c.last_resort))
            .collect::<Vec<_>>()
    };
    // b2 is pending, b3 revoked: only b1 (its last-resort package).
    assert_eq!(claim(), vec![(2, vec![9], true)]);

    let expired = |bytes: Vec<u8>| NewKeyPackage {
        bytes,
        not_after: NOW_S,
    };
    assert_eq!(
        store
            .add_key_packages(&b1, &[expired(vec![3]), kp(vec![4])], None, false)
            .unwrap(),
        2
    );
    assert_eq!(claim(), vec![(2, vec![4], false)]);
    // The expired one-time package was deleted, never handed out.
    assert_eq!(store.add_key_packages(&b1, &[], None, false).unwrap(), 0);
    assert_eq!(claim(), vec![(2, vec![9], true)]);
    // Nor is an expired last-resort package.
    store
        .add_key_packages(&b1, &[], Some(&expired(vec![8])), false)
        .unwrap();
    assert_eq!(claim(), vec![]);

    // Replacing drops the unclaimed one-time packages first.
    assert_eq!(
        store
            .add_key_packages(&b1, &[kp(vec![5]), kp(vec![6])], None, false)
            .unwrap(),
        2
    );
    assert_eq!(
        store
            .add_key_packages(&b1, &[kp(vec![7])], None, true)
            .unwrap(),
        1
    );
    assert_eq!(claim(), vec![(2, vec![7], false)]);
}

/// A database at schema `version`, with one user if `with_user`.
fn database_at(version: usize, with_user: bool) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t.db");
    let conn = Connection::open(&path).unwrap();
    for sql in &MIGRATIONS[..version] {
        conn.execute_batch(sql).unwrap();
    }
    conn.pragma_update(None, "user_version", version).unwrap();
    if with_user {
        conn.execute(
            "INSERT INTO users (user, created_at_ms) VALUES ('alice@mfa.example', 0)",
            [],
        )
        .unwrap();
    }
    (dir, path)
}

#[test]
fn users_from_before_device_approval_are_not_carried_over() {
    let (_dir, path) = database_at(FIRST_CARRIED - 1, true);
    let err = SqliteStore::open(&path).err().unwrap();
    assert!(matches!(err, StoreError::Incompatible(_)), "{err}");
    assert!(err.to_string().contains("initialise a new data directory"));
    // An older database without users is upgraded.
    let (_dir, path) = database_at(FIRST_CARRIED - 1, false);
    SqliteStore::open(&path).unwrap();
}

/// Rows in every table of the database.
fn all_rows(store: &SqliteStore) -> i64 {
    let conn = store.reader();
    let tables: Vec<String> = conn
        .prepare("SELECT name FROM sqlite_master WHERE type = 'table'")
        .unwrap()
        .query_map([], |r| r.get(0))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    tables
        .iter()
        .map(|t| {
            conn.query_row(&format!("SELECT count(*) FROM \"{t}\""), [], |r| {
                r.get::<_, i64>(0)
            })
            .unwrap()
        })
        .sum()
}

/// G2: a letter costs the server the same rows whether its conversation
/// has 2 devices or 1,000 (one log row, its id; no row per recipient).
#[test]
fn a_letter_costs_the_same_rows_at_any_fan_out() {
    let (_d, store) = open();
    let rows_for = |id: u8, devices: usize| {
        let roster: Vec<DeviceAddress> = (0..devices)
            .map(|i| {
                DeviceAddress::new(
                    user(&format!("u{i}@x.y")),
                    DeviceId::from_bytes((i as u64 + 1000 * u64::from(id)).to_be_bytes()),
                )
            })
            .collect();
        let c = conversation(&store, id, roster.clone());
        // A first letter, so that the sender's usage row exists in both.
        store
            .write_log(vec![LogWrite::Letters(vec![msg(c, &roster[0], id, 0)])])
            .unwrap();
        let before = all_rows(&store);
        let mut next = msg(c, &roster[0], id, 0);
        next.client_msg_id = MessageId::from_bytes([id + 100; 16]);
        let batch = store
            .write_log(vec![LogWrite::Letters(vec![next])])
            .unwrap();
        let LogWritten::Letters(out) = &batch.written[0] else {
            panic!("not letters")
        };
        assert!(
            matches!(out[0], LetterOutcome::Accepted { recipients, .. } if recipients as usize == devices - 1)
        );
        all_rows(&store) - before
    };
    let small = rows_for(1, 2);
    let large = rows_for(2, 1000);
    assert_eq!(small, large, "rows written per letter");
    assert!(small <= 3, "{small} rows per letter");
}

/// Issue 9 review: a read that raced a commit could see one
/// conversation's new row and not another's, and move the device's cursor
/// past the row it missed, for good. Reads stop at what is published.
#[test]
fn reads_never_pass_a_row_not_yet_published() {
    let (_d, store) = open();
    let (a, b) = (addr("alice@x.y", 1), addr("bob@x.y", 2));
    let c1 = conversation(&store, 1, vec![a.clone(), b.clone()]);
    let c2 = conversation(&store, 2, vec![a.clone(), b.clone()]);
    let c3 = conversation(&store, 3, vec![a.clone()]);
    // Both conversations' heads are known to readers.
    store
        .write_log(vec![LogWrite::Letters(vec![
            msg(c1, &a, 1, 0),
            msg(c2, &a, 2, 0),
        ])])
        .unwrap();
    let seen = store.inbox(&b, None, 100, usize::MAX).unwrap();
    assert_eq!(seen.entries.len(), 2);
    // A batch committed, not yet published: a letter in each conversation,
    // and a commit adding bob to a third (a Welcome targeted at him).
    let add = AppliedCommit {
        conversation: c3,
        expected_epoch: 0,
        new_epoch: 1,
        new_state: vec![1],
        new_roster: vec![a.clone(), b.clone()],
        new_group_info: vec![1],
        sender: a.clone(),
        commit: vec![0xc0],
        welcome: Some(WelcomeDelivery {
            message: vec![0x3e],
            ratchet_tree: vec![0x7e],
            joiners: vec![b.clone()],
        }),
        now_ms: 2,
    };
    let published = {
        let mut w = lock(&store.writer);
        let Writer { conn, log } = &mut *w;
        let tx = conn.transaction().unwrap();
        let (written, published) = log::write_batch(
            &tx,
            log,
            &store.shared,
            vec![
                LogWrite::Letters(vec![msg(c1, &a, 3, 0), msg(c2, &a, 4, 0)]),
                LogWrite::Commit(add),
            ],
        )
        .unwrap();
        tx.commit().unwrap();
        assert!(matches!(written.written[1], LogWritten::Committed(Ok(()))));
        published
    };
    let racing = store.inbox(&b, Some(seen.next), 100, usize::MAX).unwrap();
    assert!(racing.entries.is_empty(), "{:?}", racing.entries);
    assert_eq!(racing.next, seen.next, "the cursor passed unpublished rows");
    log::publish(&store.shared, published);
    let after = store.inbox(&b, Some(racing.next), 100, usize::MAX).unwrap();
    assert_eq!(
        bodies_of(&after),
        vec![vec![3; 10], vec![4; 10], vec![0x3e]]
    );
}

fn bodies_of(read: &InboxRead) -> Vec<Vec<u8>> {
    read.entries.iter().map(|e| e.message.clone()).collect()
}

/// Issue 9 review: a device that never reads again (revoked, lost) held
/// back collection for good, and its correspondents' quota with it.
#[test]
fn a_revoked_device_holds_back_no_collection() {
    let (_d, store) = open();
    let (a, b) = (addr("alice@x.y", 1), addr("bob@x.y", 2));
    enrol(&store, &a, 1);
    enrol(&store, &b, 1);
    let c = conversation(&store, 1, vec![a.clone(), b.clone()]);
    store
        .write_log(vec![LogWrite::Letters(vec![
            msg(c, &a, 1, 0),
            msg(c, &a, 2, 0),
        ])])
        .unwrap();
    let alice = store.inbox(&a, None, 100, usize::MAX).unwrap();
    store
        .write_log(vec![LogWrite::Ack {
            device: a.clone(),
            at: alice.next,
        }])
        .unwrap();
    // Bob never reads: nothing can go.
    assert_eq!(store.collect_garbage(1000).unwrap(), 0);
    store
        .revoke_device(&NewRevocation {
            device: b.clone(),
            at: None,
            by: None,
            now_ms: 30,
        })
        .unwrap();
    assert_eq!(store.collect_garbage(1000).unwrap(), 2);
}

/// Every statement of the hot paths uses an index: none scans a table
/// (their plans read on a database with the whole schema).
#[test]
fn hot_statements_never_scan() {
    let (_d, store) = open();
    let conn = store.reader();
    for (name, sql) in log::HOT_PATH
        .iter()
        .chain(audit::HOT_PATH)
        .chain(blobs::HOT_PATH)
    {
        let mut stmt = conn.prepare(&format!("EXPLAIN QUERY PLAN {sql}")).unwrap();
        let nulls = vec![rusqlite::types::Null; stmt.parameter_count()];
        let plan: Vec<String> = stmt
            .query_map(rusqlite::params_from_iter(nulls), |r| r.get::<_, String>(3))
            .unwrap()
            .map(Result::unwrap)
            .collect();
        // `SCAN CONSTANT ROW` is a SELECT of subqueries: no table.
        for step in plan.iter().filter(|s| *s != "SCAN CONSTANT ROW") {
            assert!(!step.starts_with("SCAN"), "{name} scans: {plan:?}");
        }
    }
}

/// Issue 11: attestations join their user's record (so the published
/// list), each once, queued for the directory in the same write; the
/// authority key is kept and replaced.
#[test]
fn attestations_and_the_authority_key() {
    let (_dir, store) = open();
    let alice = addr("alice@x.y", 1);
    enrol(&store, &alice, 1);
    let (_, queued) = store.directory_pending().unwrap();
    let none = |_: &[u8]| false;
    assert!(
        store
            .add_attestation(&alice.user, &[0xd2; 40], &none, 64, 30)
            .unwrap()
    );
    assert!(
        !store
            .add_attestation(&alice.user, &[0xd2; 40], &none, 64, 31)
            .unwrap()
    );
    assert!(
        store
            .add_attestation(&alice.user, &[0x84; 40], &none, 64, 32)
            .unwrap()
    );
    let (users, now) = store.directory_pending().unwrap();
    assert!(users.contains(&alice.user) && now == queued + 2);
    let record = store.user(&alice.user).unwrap();
    assert_eq!(record.attestations, vec![vec![0x84; 40], vec![0xd2; 40]]);
    let list = crate::directory::device_list(&record).unwrap();
    assert_eq!(list.attestations().count(), 2);
    assert!(matches!(
        store.add_attestation(&user("nobody@x.y"), &[1], &none, 64, 33),
        Err(StoreError::NotFound)
    ));
    assert_eq!(store.accreditation_authority().unwrap(), None);
    assert_eq!(store.set_accreditation_authority("aa", 1).unwrap(), None);
    assert_eq!(
        store.set_accreditation_authority("bb", 2).unwrap(),
        Some("aa".into())
    );
    assert_eq!(store.accreditation_authority().unwrap(), Some("bb".into()));
}

/// Review: past `MAX_ATTESTATIONS` a user's entry was refused by the
/// publisher (skipped, with a log line) and froze: no device change of
/// theirs, a revocation included, was published again. Renewals replace
/// expired attestations, and one past the limit is refused at publishing.
#[test]
fn attestations_renewed_for_years_stay_publishable() {
    use crate::accreditation::{PublishError, publish};
    use valise_directory::entry::MAX_ATTESTATIONS;
    use valise_proto::attestation::{Accreditation, AuthoritySecret};
    use valise_proto::marking::Label;
    const YEAR_S: i64 = 365 * 86_400;
    let (_dir, store) = open();
    let alice = addr("alice@x.y", 1);
    enrol(&store, &alice, 1);
    let officer = AuthoritySecret::generate();
    store
        .set_accreditation_authority(&officer.public().to_string(), 1)
        .unwrap();
    let sign = |issued_at_s: i64, not_after_s: i64| {
        Accreditation {
            device: None,
            issued_at_s,
            label: Label::parse("EU RESTRICTED").unwrap(),
            not_after_s,
            user: alice.user.clone(),
        }
        .sign(&officer)
        .unwrap()
    };
    let publishable = || crate::directory::device_list(&store.user(&alice.user).unwrap()).unwrap();
    let start_s = 1_700_000_000;
    for year in 0..MAX_ATTESTATIONS as i64 + 2 {
        let now_s = start_s + year * YEAR_S;
        let (_, added) = publish(&store, &sign(now_s, now_s + YEAR_S), now_s * 1000).unwrap();
        assert!(added);
        // This year's and last year's (valid to this second).
        assert_eq!(
            publishable().attestations().count(),
            2.min(year as usize + 1)
        );
    }
    // A second after the last renewal expired: as many as fit at once.
    let now_s = start_s + (MAX_ATTESTATIONS as i64 + 2) * YEAR_S + 1;
    for n in 0..MAX_ATTESTATIONS as i64 {
        publish(&store, &sign(now_s + n, now_s + YEAR_S), now_s * 1000).unwrap();
    }
    let one_more = sign(now_s - 1, now_s + YEAR_S);
    assert!(matches!(
        publish(&store, &one_more, now_s * 1000),
        Err(PublishError::TooMany(_))
    ));
    assert_eq!(publishable().attestations().count(), MAX_ATTESTATIONS);
}

/// Issue 11: only its owner links a blob, only once complete; the sweep
/// takes what no letter named within the window, complete or not, and
/// leaves linked blobs however old; the quota counts what is left.
#[test]
fn blobs_no_letter_names_are_swept_and_free_the_quota() {
    let (_dir, store) = open();
    let (alice, bob) = (user("alice@x.y"), user("bob@x.y"));
    let blob = |n: u8, owner: &UserId, length: u64| {
        let b = BlobRecord {
            id: BlobId::from_bytes([n; 16]),
            owner: owner.clone(),
            length,
            durable: 0,
            parts: 0,
            created_at_ms: 10,
        };
        store.create_blob(&b, 300).unwrap();
        b.id
    };
    let (linked, orphan, unfinished, bobs) = (
        blob(1, &alice, 100),
        blob(2, &alice, 100),
        blob(3, &alice, 100),
        blob(4, &bob, 100),
    );
    for id in [linked, orphan, bobs] {
        store.blob_part(&id, 0, 100).unwrap();
    }
    store.blob_part(&unfinished, 0, 50).unwrap();
    let gone = BlobId::from_bytes([9; 16]);
    // Bob's blob, an unfinished one and an unknown one are not linked.
    assert_eq!(
        store
            .link_blobs(&alice, &[linked, bobs, unfinished, gone])
            .unwrap(),
        vec![bobs, unfinished, gone]
    );
    assert_eq!(store.link_blobs(&alice, &[linked]).unwrap(), vec![]);
    // Alice's 300 bytes are used up until the sweep.
    assert!(matches!(
        store.create_blob(
            &BlobRecord {
                id: BlobId::from_bytes([5; 16]),
                owner: alice.clone(),
                length: 100,
                durable: 0,
                parts: 0,
                created_at_ms: 40,
            },
            300
        ),
        Err(StoreError::QuotaExceeded)
    ));
    assert_eq!(store.expire_blobs(10).unwrap(), vec![], "within the window");
    let mut swept = store.expire_blobs(11).unwrap();
    swept.sort();
    assert_eq!(swept, vec![orphan, unfinished, bobs]);
    assert!(store.blob(&linked).unwrap().is_some());
    assert_eq!(store.expire_blobs(i64::MAX).unwrap(), vec![]);
    blob(5, &alice, 200);
}
