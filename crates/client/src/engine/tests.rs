//! The engine with no server: devices on in-memory homes exchange real MLS
//! messages the way the hub would hand them over, and a test plays the
//! hub (honest, or not). Each story states one rule of the inbound core.

use super::Engine;
use super::inbound::Applied;
use super::membership::Change;
use super::outbound::{Target, Written};
use super::rejoin::Judgement;
use crate::clock::Clock;
use crate::home::Home;
use crate::mls;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use std::cell::Cell;
use valise_directory::{
    Approval, DeviceEntry, DeviceList, Identity, RootLedger, RootSigner, SignatureKey,
    approval_message, verify_root,
};
use valise_proto::api::{EntryKind, GroupInfoState, InboxEntry, SubmitCommit};
use valise_proto::{ConversationId, DeviceAddress, DeviceId, Letter, MessageId, ThreadId, UserId};

const DIRECTORY_SEED: [u8; 32] = [9; 32];

fn passphrase() -> crate::home::Passphrase {
    crate::home::Passphrase::new("engine tests".into())
}

/// One device on an in-memory home.
struct Dev {
    engine: Engine,
    seq: Cell<u64>,
}

fn user(name: &str) -> UserId {
    UserId::parse(&format!("{name}@mfa.example")).unwrap()
}

impl Dev {
    fn new(name: &str) -> Self {
        Self::on(Home::in_memory().unwrap(), name)
    }

    /// A device whose home is sealed on disk at `path` (it can be copied).
    fn on_disk(path: &std::path::Path, name: &str) -> Self {
        Self::on(Home::open_or_create(path, &passphrase()).unwrap(), name)
    }

    /// What a thief holding a copy of this device's home (and its
    /// passphrase) runs: the same device, keys and groups.
    fn copy(&self, from: &std::path::Path, to: &std::path::Path) -> Self {
        std::fs::create_dir_all(to).unwrap();
        for entry in std::fs::read_dir(from).unwrap() {
            let path = entry.unwrap().path();
            std::fs::copy(&path, to.join(path.file_name().unwrap())).unwrap();
        }
        let home = Home::open_or_create(to, &passphrase()).unwrap();
        let crypto = super::new_crypto().unwrap();
        let signer = SignatureKeyPair::read(
            crate::provider::Provider::new(&crypto, home.connection()).storage(),
            &self.key(),
            SignatureScheme::ED25519,
        )
        .unwrap();
        Self {
            engine: Engine::new(home, crypto, self.me().clone(), signer, Clock::system()),
            seq: Cell::new(self.seq.get()),
        }
    }

    fn on(home: Home, name: &str) -> Self {
        let crypto = super::new_crypto().unwrap();
        let signer = SignatureKeyPair::new(SignatureScheme::ED25519).unwrap();
        signer
            .store(crate::provider::Provider::new(&crypto, home.connection()).storage())
            .unwrap();
        let me = DeviceAddress::new(user(name), DeviceId::from_bytes(rand::random()));
        let engine = Engine::new(home, crypto, me, signer, Clock::system());
        pin(&engine, 5, [1; 32]);
        Self {
            engine,
            seq: Cell::new(0),
        }
    }

    fn me(&self) -> &DeviceAddress {
        &self.engine.me
    }

    fn key(&self) -> Vec<u8> {
        self.engine.signer.public().to_vec()
    }

    /// This device's own entry: it founds its user's identity.
    fn entry(&self) -> DeviceList {
        DeviceList::founded_by(self.me().device, self.key()).unwrap()
    }

    /// What a verified lookup of `user` would show this device.
    fn learn(&self, user: &UserId, list: &DeviceList) {
        self.engine.record_proven(user, list, 5).unwrap();
    }

    /// Every device of `devs` founding its own user's identity, known to all.
    fn introduce(devs: &[&Dev]) {
        for a in devs {
            for b in devs {
                a.learn(&b.me().user, &b.entry());
            }
        }
    }

    fn key_package(&self) -> KeyPackage {
        let (batch, _) = self.engine.key_packages(false).unwrap();
        mls::verify_key_package(
            &self.engine.provider(),
            batch.packages[0].as_slice(),
            self.me(),
            self.engine.clock.now_s(),
        )
        .unwrap()
    }

    /// The hub hands this device an entry.
    fn take(
        &self,
        kind: EntryKind,
        conv: &ConversationId,
        from: &Dev,
        message: &[u8],
    ) -> crate::Result<Applied> {
        self.take_with_tree(kind, conv, from, message, None)
    }

    fn take_with_tree(
        &self,
        kind: EntryKind,
        conv: &ConversationId,
        from: &Dev,
        message: &[u8],
        tree: Option<Vec<u8>>,
    ) -> crate::Result<Applied> {
        self.seq.set(self.seq.get() + 1);
        self.engine.apply_entry(&InboxEntry {
            seq: self.seq.get(),
            kind,
            conversation: *conv,
            sender: from.me().clone(),
            message: message.to_vec().into(),
            ratchet_tree: tree.map(Into::into),
        })
    }

    /// Stages a commit, and the hub takes it: its echo merges it here.
    fn commit(&self, conv: &ConversationId, change: Change) -> SubmitCommit {
        let submit = self.engine.stage(conv, change).unwrap();
        let echo = self
            .take(EntryKind::Commit, conv, self, submit.commit.as_slice())
            .unwrap();
        assert!(matches!(echo, Applied::Commit), "{echo:?}");
        submit
    }

    fn tree(&self, conv: &ConversationId) -> Vec<u8> {
        self.engine
            .with_group(conv, |g, _| Ok(mls::serialize(&g.export_ratchet_tree())?))
            .unwrap()
    }

    fn epoch(&self, conv: &ConversationId) -> u64 {
        self.engine
            .with_group(conv, |g, _| Ok(g.epoch().as_u64()))
            .unwrap()
    }

    /// Writes a letter into `conv` and returns the sealed message.
    fn write(&self, conv: &ConversationId, subject: &str) -> Vec<u8> {
        let letter = letter(subject);
        self.engine
            .write_letter(&Target::Conversation(*conv), &letter)
            .unwrap();
        let entry = self
            .engine
            .home
            .outbound(&letter.message_id)
            .unwrap()
            .unwrap();
        assert_eq!(self.engine.seal_or_hold(entry).unwrap(), Written::Sealed);
        let sealed = self
            .engine
            .home
            .outbound(&letter.message_id)
            .unwrap()
            .unwrap();
        sealed.sealed.unwrap().ciphertext
    }

    fn subjects(&self) -> Vec<String> {
        self.engine
            .home
            .inbox_after(0)
            .unwrap()
            .into_iter()
            .map(|l| l.subject)
            .collect()
    }

    fn alerts(&self) -> Vec<String> {
        self.engine
            .home
            .alerts(false)
            .unwrap()
            .into_iter()
            .map(|a| a.kind)
            .collect()
    }
}

/// Pins the test directory with the root of `epoch`.
fn pin(engine: &Engine, epoch: u64, hash: [u8; 32]) {
    let signer = RootSigner::from_seed(&DIRECTORY_SEED);
    let root = verify_root(&signer.sign(epoch, hash, 1, [2; 32]), &signer.public_key()).unwrap();
    let mut ledger = RootLedger::new();
    ledger.accept(&root).unwrap();
    engine
        .home
        .pin_directory(
            &signer.public_key().0,
            &serde_json::to_string(&ledger).unwrap(),
        )
        .unwrap();
    engine.keep_ledger(&ledger, &root, &[]).unwrap();
}

fn letter(subject: &str) -> Letter {
    Letter {
        message_id: MessageId::from_bytes(rand::random()),
        subject: subject.into(),
        body: "body".into(),
        to: vec![],
        thread: ThreadId::from_bytes(rand::random()),
        in_reply_to: None,
        sent_at_ms: 0,
        marking: None,
        seq: 0,
        prev: None,
        root: None,
        attachments: vec![],
    }
}

fn adds(kps: Vec<KeyPackage>) -> Change {
    Change {
        adds: kps,
        ..Change::default()
    }
}

/// A conversation of `owner` with `others`, everyone joined.
fn conversation(owner: &Dev, others: &[&Dev]) -> ConversationId {
    let id = ConversationId::from_bytes(rand::random());
    owner.engine.create_group(&id, "test", false).unwrap();
    let submit = owner.commit(&id, adds(others.iter().map(|d| d.key_package()).collect()));
    let welcome = submit.welcome.unwrap();
    for d in others {
        let joined = d
            .take_with_tree(
                EntryKind::Welcome,
                &id,
                owner,
                welcome.as_slice(),
                Some(owner.tree(&id)),
            )
            .unwrap();
        assert!(matches!(joined, Applied::Joined), "{joined:?}");
    }
    id
}

#[test]
fn a_removed_member_reads_nothing_written_after_its_removal() {
    let (alice, bob, carol) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    Dev::introduce(&[&alice, &bob, &carol]);
    let conv = conversation(&alice, &[&bob, &carol]);
    let first = alice.write(&conv, "to both");
    for d in [&bob, &carol] {
        assert!(matches!(
            d.take(EntryKind::Application, &conv, &alice, &first),
            Ok(Applied::Letter)
        ));
    }
    let removal = alice.commit(
        &conv,
        Change {
            removes: [carol.me().clone()].into(),
            ..Change::default()
        },
    );
    for d in [&bob, &carol] {
        d.take(EntryKind::Commit, &conv, &alice, removal.commit.as_slice())
            .unwrap();
    }
    assert!(
        !carol
            .engine
            .home
            .conversation(&conv)
            .unwrap()
            .unwrap()
            .active
    );
    let after = alice.write(&conv, "bob only");
    assert!(matches!(
        bob.take(EntryKind::Application, &conv, &alice, &after),
        Ok(Applied::Letter)
    ));
    assert!(
        carol
            .take(EntryKind::Application, &conv, &alice, &after)
            .is_err()
    );
    assert_eq!(bob.subjects(), ["to both", "bob only"]);
    assert_eq!(carol.subjects(), ["to both"]);
}

#[test]
fn nothing_is_shown_from_a_key_its_user_did_not_approve() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    // Alice's view of bob changes: his key is now only pending (not signed
    // by his identity), as for a device the server slipped in.
    let other = Dev::new("bob");
    let pending = DeviceList::new(
        Identity {
            key: SignatureKey(other.key()),
            generation: 1,
        },
        vec![
            DeviceEntry::new(other.me().device, other.key(), 0, 1),
            DeviceEntry::new(bob.me().device, bob.key(), 1, 1),
        ],
    )
    .unwrap();
    alice.learn(&bob.me().user, &pending);
    let letter = bob.write(&conv, "from bob");
    let out = alice
        .take(EntryKind::Application, &conv, &bob, &letter)
        .unwrap();
    assert!(
        matches!(out, Applied::NeedsProof(ref u) if u[0].0 == bob.me().user),
        "{out:?}"
    );
    assert!(alice.subjects().is_empty(), "undone");
    // Once approved (signed by the identity's founder), it is shown.
    let mut entry = DeviceEntry::new(bob.me().device, bob.key(), 1, 1);
    let identity = Identity {
        key: SignatureKey(other.key()),
        generation: 1,
    };
    let message = approval_message(&bob.me().user, &identity, &bob.me().device, &bob.key(), 1);
    use openmls_traits::signatures::Signer as _;
    entry.approval = Some(Approval {
        by: other.me().device,
        signature: SignatureKey(other.engine.signer.sign(&message).unwrap()),
    });
    let approved = DeviceList::new(
        identity,
        vec![
            DeviceEntry::new(other.me().device, other.key(), 0, 1),
            entry,
        ],
    )
    .unwrap();
    alice.learn(&bob.me().user, &approved);
    assert!(matches!(
        alice.take(EntryKind::Application, &conv, &bob, &letter),
        Ok(Applied::Letter)
    ));
}

#[test]
fn a_commit_that_brings_in_a_pending_device_is_refused() {
    let (alice, bob, dave) = (Dev::new("alice"), Dev::new("bob"), Dev::new("dave"));
    Dev::introduce(&[&alice, &bob, &dave]);
    let conv = conversation(&alice, &[&bob]);
    // Bob (a malicious member) adds a device alice knows only as pending.
    let stranger = Dev::new("dave");
    alice.learn(
        &dave.me().user,
        &DeviceList::new(
            dave.entry().identity().clone(),
            vec![
                DeviceEntry::new(dave.me().device, dave.key(), 0, 1),
                DeviceEntry::new(stranger.me().device, stranger.key(), 1, 1),
            ],
        )
        .unwrap(),
    );
    bob.learn(&dave.me().user, &stranger.entry());
    let add = bob.commit(&conv, adds(vec![stranger.key_package()]));
    let out = alice
        .take(EntryKind::Commit, &conv, &bob, add.commit.as_slice())
        .unwrap();
    assert!(
        matches!(out, Applied::NeedsProof(ref u) if u[0].1 == super::identity::Doubt::Pending),
        "{out:?}"
    );
    assert_eq!(alice.epoch(&conv), 1, "nothing merged");
}

#[test]
fn withheld_letters_leave_a_gap_that_is_alerted() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let one = alice.write(&conv, "1");
    let _two = alice.write(&conv, "2");
    let three = alice.write(&conv, "3");
    bob.take(EntryKind::Application, &conv, &alice, &one)
        .unwrap();
    bob.take(EntryKind::Application, &conv, &alice, &three)
        .unwrap();
    assert_eq!(bob.alerts(), ["letters_withheld"]);
}

#[test]
fn a_fork_is_seen_and_the_hub_side_is_rejoined_only_as_verified() {
    let (alice, bob, carol, dave) = (
        Dev::new("alice"),
        Dev::new("bob"),
        Dev::new("carol"),
        Dev::new("dave"),
    );
    Dev::introduce(&[&alice, &bob, &carol, &dave]);
    let conv = conversation(&alice, &[&bob, &carol]);
    // Two commits for epoch 1: alice's (the hub's side) and bob's.
    let ours = alice
        .engine
        .stage(&conv, adds(vec![dave.key_package()]))
        .unwrap();
    bob.commit(
        &conv,
        Change {
            update: true,
            ..Change::default()
        },
    );
    alice
        .take(EntryKind::Commit, &conv, &alice, ours.commit.as_slice())
        .unwrap();
    let out = bob
        .take(EntryKind::Commit, &conv, &alice, ours.commit.as_slice())
        .unwrap();
    let Applied::Fork(fork) = out else {
        panic!("{out:?}")
    };
    let entry = InboxEntry {
        seq: 99,
        kind: EntryKind::Commit,
        conversation: conv,
        sender: alice.me().clone(),
        message: ours.commit.clone(),
        ratchet_tree: None,
    };
    bob.engine.diverge_on_fork(&entry, &fork).unwrap();
    assert_eq!(bob.alerts(), ["fork"]);
    let hub = GroupInfoState {
        epoch: 2,
        group_info: ours.group_info.clone().unwrap(),
        ratchet_tree: alice.tree(&conv).into(),
    };
    // The hub's state is what bob verified of alice's commit: rejoin.
    let Judgement::Rejoin(leaves) = bob.engine.judge(&conv, &hub).unwrap() else {
        panic!("bob may rejoin the hub's side")
    };
    assert_eq!(
        leaves.len(),
        4,
        "dave, added by the commit bob verified, is in"
    );
}

#[test]
fn a_rolled_back_group_with_a_removed_member_is_refused() {
    let (alice, bob, carol) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    Dev::introduce(&[&alice, &bob, &carol]);
    let conv = conversation(&alice, &[&bob, &carol]);
    // Alice removes carol (epoch 1 -> 2); carol never learns of it.
    alice.commit(
        &conv,
        Change {
            removes: [carol.me().clone()].into(),
            ..Change::default()
        },
    );
    // The intruder restores the hub's state of epoch 1 and lets carol,
    // still a member there, commit on it: a valid commit for epoch 1.
    let carols = carol.commit(
        &conv,
        Change {
            update: true,
            ..Change::default()
        },
    );
    let out = alice
        .take(EntryKind::Commit, &conv, &carol, carols.commit.as_slice())
        .unwrap();
    let Applied::Fork(fork) = out else {
        panic!("{out:?}")
    };
    let entry = InboxEntry {
        seq: 99,
        kind: EntryKind::Commit,
        conversation: conv,
        sender: carol.me().clone(),
        message: carols.commit.clone(),
        ratchet_tree: None,
    };
    alice.engine.diverge_on_fork(&entry, &fork).unwrap();
    let hub = GroupInfoState {
        epoch: 2,
        group_info: carols.group_info.clone().unwrap(),
        ratchet_tree: carol.tree(&conv).into(),
    };
    let judged = alice.engine.judge(&conv, &hub).unwrap();
    assert!(
        matches!(&judged, Judgement::Refuse(why) if why.contains(&carol.me().to_string())),
        "{judged:?}"
    );
    // Nothing is sealed there: a letter waits.
    let letter = letter("after the removal");
    alice
        .engine
        .write_letter(&Target::Conversation(conv), &letter)
        .unwrap();
    let entry = alice
        .engine
        .home
        .outbound(&letter.message_id)
        .unwrap()
        .unwrap();
    assert!(matches!(
        alice.engine.seal_or_hold(entry).unwrap(),
        Written::Held(_)
    ));
}

#[test]
fn a_state_older_than_the_shared_epoch_is_a_rollback() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let old = alice.commit(
        &conv,
        Change {
            update: true,
            ..Change::default()
        },
    );
    let old_tree = alice.tree(&conv);
    alice.commit(
        &conv,
        Change {
            update: true,
            ..Change::default()
        },
    );
    // A garbage commit makes alice fall out of step; the hub then offers
    // the state of an earlier epoch.
    let garbage = InboxEntry {
        seq: 99,
        kind: EntryKind::Commit,
        conversation: conv,
        sender: bob.me().clone(),
        message: vec![0, 1, 2].into(),
        ratchet_tree: None,
    };
    alice.engine.diverge_on_refused_commit(&garbage).unwrap();
    let hub = GroupInfoState {
        epoch: 2,
        group_info: old.group_info.unwrap(),
        ratchet_tree: old_tree.into(),
    };
    assert!(matches!(
        alice.engine.judge(&conv, &hub).unwrap(),
        Judgement::Refuse(_)
    ));
}

#[test]
fn a_member_shown_another_root_for_an_epoch_raises_directory_conflict() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    // The server showed bob another root for epoch 5 than alice holds.
    let signer = RootSigner::from_seed(&DIRECTORY_SEED);
    let other = verify_root(&signer.sign(5, [7; 32], 2, [2; 32]), &signer.public_key()).unwrap();
    let mut ledger = RootLedger::new();
    ledger.accept(&other).unwrap();
    bob.engine.keep_ledger(&ledger, &other, &[]).unwrap();
    let letter = bob.write(&conv, "hello");
    alice
        .take(EntryKind::Application, &conv, &bob, &letter)
        .unwrap();
    assert_eq!(alice.alerts(), ["directory_conflict"]);
    // A root of a newer epoch is left for the client to prove.
    let newer = signer.sign(6, [8; 32], 3, [2; 32]);
    alice
        .engine
        .check_root(Some(&conv), &newer.to_bytes())
        .unwrap();
    assert_eq!(alice.engine.take_newer_roots(), vec![newer.to_bytes()]);
}

#[test]
fn letters_to_a_person_whose_identity_changed_wait_until_verified() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    // An administrator's reset: bob's identity is another key now.
    let reset = Dev::new("bob");
    alice.learn(&bob.me().user, &reset.entry());
    assert_eq!(alice.alerts(), ["identity_changed"]);
    let letter = letter("held");
    alice
        .engine
        .write_letter(&Target::Conversation(conv), &letter)
        .unwrap();
    let entry = alice
        .engine
        .home
        .outbound(&letter.message_id)
        .unwrap()
        .unwrap();
    assert!(
        matches!(alice.engine.seal_or_hold(entry.clone()).unwrap(), Written::Held(why) if why.contains("identity changed"))
    );
    alice.engine.mark_verified(&bob.me().user).unwrap();
    assert_eq!(alice.engine.seal_or_hold(entry).unwrap(), Written::Sealed);
}

#[test]
fn send_to_reuses_only_a_conversation_of_exactly_its_recipients() {
    let (alice, bob, carol) = (Dev::new("alice"), Dev::new("bob"), Dev::new("carol"));
    Dev::introduce(&[&alice, &bob, &carol]);
    let id = ConversationId::from_bytes(rand::random());
    alice.engine.create_group(&id, "", true).unwrap();
    alice.commit(&id, adds(vec![bob.key_package()]));
    let to_bob = [bob.me().user.clone()];
    assert_eq!(alice.engine.direct_conversation(&to_bob).unwrap(), Some(id));
    // Someone adds carol: it is no longer the conversation of exactly bob.
    alice.commit(&id, adds(vec![carol.key_package()]));
    assert_eq!(alice.engine.direct_conversation(&to_bob).unwrap(), None);
    // A letter sealed for exactly bob is held back from it.
    let letter = letter("for bob only");
    alice
        .engine
        .write_letter(
            &Target::Exactly {
                users: to_bob.to_vec(),
                conversation: Some(id),
            },
            &letter,
        )
        .unwrap();
    let entry = alice
        .engine
        .home
        .outbound(&letter.message_id)
        .unwrap()
        .unwrap();
    assert!(matches!(
        alice.engine.seal_or_hold(entry).unwrap(),
        Written::Held(_)
    ));
}

#[test]
fn a_copy_of_a_device_committing_beside_it_is_detected() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Dev::new("alice");
    let bob = Dev::on_disk(&dir.path().join("bob"), "bob");
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let copy = bob.copy(&dir.path().join("bob"), &dir.path().join("copy"));
    // The copy renews bob's leaf; the hub takes it.
    let update = copy.commit(
        &conv,
        Change {
            update: true,
            ..Change::default()
        },
    );
    // Bob's device: a commit signed by its own key that it did not make.
    let out = bob.take(EntryKind::Commit, &conv, &copy, update.commit.as_slice());
    assert!(matches!(out, Err(crate::ClientError::Cloned(_))), "{out:?}");
    assert_eq!(bob.epoch(&conv), 1, "not followed");
    // Alice, for whom it is bob renewing his keys, follows it.
    assert!(matches!(
        alice.take(EntryKind::Commit, &conv, &copy, update.commit.as_slice()),
        Ok(Applied::Commit)
    ));
}
