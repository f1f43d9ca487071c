//! The engine with no server: devices on in-memory homes exchange real MLS
//! messages the way the hub would hand them over, and a test plays the
//! hub (honest, or not). Each story states one rule of the inbound core.

use super::Engine;
use super::inbound::Applied;
use super::membership::Change;
use super::outbound::{Target, Written};
use super::rejoin::Judgement;
use crate::clock::Clock;
use crate::home::outbox::Outbound;
use crate::home::{Home, Retake};
use crate::mls;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use std::cell::Cell;
use valise_directory::identity::revocation_message;
use valise_directory::{
    Approval, DeviceEntry, DeviceList, DeviceStatus, Identity, Revocation, RootLedger, RootSigner,
    SignatureKey, approval_message, verify_root,
};
use valise_proto::api::{GroupInfoState, SubmitCommit};
use valise_proto::wire::{Entry as InboxEntry, EntryKind};
use valise_proto::{ConversationId, DeviceAddress, DeviceId, Letter, MessageId, ThreadId, UserId};

mod clearance;
mod desk;
mod held;
mod history;

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
        Self::open(to, self.me().clone(), &self.key(), self.seq.get())
    }

    /// The same device after a restart: its home at `path` opened again.
    fn reopen(self, path: &std::path::Path) -> Self {
        let (me, key, seq) = (self.me().clone(), self.key(), self.seq.get());
        drop(self);
        Self::open(path, me, &key, seq)
    }

    /// Device `me` (signature key `key`) on the sealed home at `path`.
    fn open(path: &std::path::Path, me: DeviceAddress, key: &[u8], seq: u64) -> Self {
        let home = Home::open_or_create(path, &passphrase()).unwrap();
        let crypto = super::new_crypto().unwrap();
        let signer = SignatureKeyPair::read(
            crate::provider::Provider::new(&crypto, home.connection()).storage(),
            key,
            SignatureScheme::ED25519,
        )
        .unwrap();
        Self {
            engine: Engine::new(home, crypto, me, signer, Clock::system()),
            seq: Cell::new(seq),
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
            message: message.to_vec(),
            ratchet_tree: tree,
        })
    }

    fn sign(&self, message: &[u8]) -> SignatureKey {
        use openmls_traits::signatures::Signer as _;
        SignatureKey(self.engine.signer.sign(message).unwrap())
    }

    /// Joins by this Welcome, as the hub hands it over with the tree.
    fn join(&self, conv: &ConversationId, from: &Dev, welcome: &[u8], tree: Vec<u8>) {
        let joined = self
            .take_with_tree(EntryKind::Welcome, conv, from, welcome, Some(tree))
            .unwrap();
        assert!(matches!(joined, Applied::Joined), "{joined:?}");
    }

    /// The inbox entry the hub would hand over, and what applying it did.
    fn take_entry(
        &self,
        conv: &ConversationId,
        kind: EntryKind,
        from: &Dev,
        message: &[u8],
    ) -> (InboxEntry, crate::Result<Applied>) {
        self.seq.set(self.seq.get() + 1);
        let entry = InboxEntry {
            seq: self.seq.get(),
            kind,
            conversation: *conv,
            sender: from.me().clone(),
            message: message.to_vec(),
            ratchet_tree: None,
        };
        let out = self.engine.apply_entry(&entry);
        (entry, out)
    }

    /// Stages a commit, and the hub takes it: its echo merges it here.
    fn commit(&self, conv: &ConversationId, change: Change) -> SubmitCommit {
        let submit = self.engine.stage(conv, change).unwrap();
        let echo = self
            .take(EntryKind::Commit, conv, self, submit.commit.as_slice())
            .unwrap();
        assert!(matches!(echo, Applied::Commit { .. }), "{echo:?}");
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
        self.write_letter(conv, letter(subject))
    }

    /// Writes `letter` into `conv` and returns the sealed message.
    fn write_letter(&self, conv: &ConversationId, letter: Letter) -> Vec<u8> {
        let entry = self.queue(&Target::Conversation(*conv), &letter);
        assert_eq!(self.engine.seal_or_hold(entry).unwrap(), Written::Sealed);
        self.outbound(&letter).sealed.unwrap().ciphertext
    }

    /// Puts `letter` for `target` in the outbox, not sealed yet: its entry.
    fn queue(&self, target: &Target, letter: &Letter) -> Outbound {
        self.engine.write_letter(target, letter).unwrap();
        self.outbound(letter)
    }

    /// The outbox entry of `letter`.
    fn outbound(&self, letter: &Letter) -> Outbound {
        self.engine
            .home
            .outbound(&letter.message_id)
            .unwrap()
            .unwrap()
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
        policy: None,
    }
}

fn adds(kps: Vec<KeyPackage>) -> Change {
    Change {
        adds: kps,
        ..Change::default()
    }
}

/// A commit that renews the committer's own leaf.
fn renewal() -> Change {
    Change {
        update: true,
        ..Change::default()
    }
}

/// A commit that removes `device` from the group.
fn removal_of(device: &Dev) -> Change {
    Change {
        removes: [device.me().clone()].into(),
        ..Change::default()
    }
}

/// The commit `from` made, as the hub hands it over.
fn commit_entry(conv: &ConversationId, from: &Dev, message: &[u8]) -> InboxEntry {
    InboxEntry {
        seq: 99,
        kind: EntryKind::Commit,
        conversation: *conv,
        sender: from.me().clone(),
        message: message.to_vec(),
        ratchet_tree: None,
    }
}

/// The group state the hub offers for `epoch`: the one `commit` made,
/// with the ratchet `tree`.
fn hub_state(epoch: u64, commit: &SubmitCommit, tree: Vec<u8>) -> GroupInfoState {
    GroupInfoState {
        epoch,
        group_info: commit.group_info.clone().unwrap(),
        ratchet_tree: tree.into(),
    }
}

/// A conversation of `owner` with `others`, everyone joined.
fn conversation(owner: &Dev, others: &[&Dev]) -> ConversationId {
    let id = ConversationId::from_bytes(rand::random());
    owner.engine.create_group(&id, "test", false, None).unwrap();
    let submit = owner.commit(&id, adds(others.iter().map(|d| d.key_package()).collect()));
    let welcome = submit.welcome.unwrap();
    for d in others {
        d.join(&id, owner, welcome.as_slice(), owner.tree(&id));
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
    let removal = alice.commit(&conv, removal_of(&carol));
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

/// Bob's list as founded by `founder`, with bob's `device` second:
/// approved by the founder's signature, or pending.
fn second_device(founder: &Dev, device: &Dev, approved: bool) -> DeviceList {
    let identity = founder.entry().identity().clone();
    let mut entry = DeviceEntry::new(device.me().device, device.key(), 1, 1);
    if approved {
        use openmls_traits::signatures::Signer as _;
        let message = approval_message(
            &device.me().user,
            &identity,
            &device.me().device,
            &device.key(),
            1,
        );
        entry.approval = Some(Approval {
            by: founder.me().device,
            signature: SignatureKey(founder.engine.signer.sign(&message).unwrap()),
        });
    }
    DeviceList::new(
        identity,
        vec![
            DeviceEntry::new(founder.me().device, founder.key(), 0, 1),
            entry,
        ],
    )
    .unwrap()
}

#[test]
fn nothing_is_shown_from_a_key_its_user_did_not_approve() {
    let (alice, laptop, phone) = (Dev::new("alice"), Dev::new("bob"), Dev::new("bob"));
    Dev::introduce(&[&alice, &laptop]);
    let bob = laptop.me().user.clone();
    // The phone's own view: approved by the laptop. Alice's: pending (the
    // server shows her no approval yet).
    phone.learn(&alice.me().user, &alice.entry());
    phone.learn(&bob, &second_device(&laptop, &phone, true));
    alice.learn(&bob, &second_device(&laptop, &phone, false));
    // The phone brings alice into a conversation of its own: she refuses
    // to join a group with a key bob did not approve.
    let conv = ConversationId::from_bytes(rand::random());
    phone.engine.create_group(&conv, "", false, None).unwrap();
    let submit = phone.commit(&conv, adds(vec![alice.key_package()]));
    let welcome = submit.welcome.unwrap();
    let out = alice
        .take_with_tree(
            EntryKind::Welcome,
            &conv,
            &phone,
            welcome.as_slice(),
            Some(phone.tree(&conv)),
        )
        .unwrap();
    assert!(
        matches!(out, Applied::NeedsProof(ref u) if u[0].0 == bob),
        "{out:?}"
    );
    assert!(
        alice.engine.home.conversation(&conv).unwrap().is_none(),
        "undone"
    );
    // Once approved (signed by bob's founding device), she joins and reads.
    alice.learn(&bob, &second_device(&laptop, &phone, true));
    alice.join(&conv, &phone, welcome.as_slice(), phone.tree(&conv));
    let letter = phone.write(&conv, "from bob's phone");
    assert!(matches!(
        alice.take(EntryKind::Application, &conv, &phone, &letter),
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
    alice.learn(&dave.me().user, &second_device(&dave, &stranger, false));
    bob.learn(&dave.me().user, &second_device(&dave, &stranger, true));
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
    bob.commit(&conv, renewal());
    alice
        .take(EntryKind::Commit, &conv, &alice, ours.commit.as_slice())
        .unwrap();
    let out = bob
        .take(EntryKind::Commit, &conv, &alice, ours.commit.as_slice())
        .unwrap();
    let Applied::Fork(fork) = out else {
        panic!("{out:?}")
    };
    let entry = commit_entry(&conv, &alice, ours.commit.as_slice());
    bob.engine.diverge_on_fork(&entry, &fork).unwrap();
    assert_eq!(bob.alerts(), ["fork"]);
    let hub = hub_state(2, &ours, alice.tree(&conv));
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
    alice.commit(&conv, removal_of(&carol));
    // The intruder restores the hub's state of epoch 1 and lets carol,
    // still a member there, commit on it: a valid commit for epoch 1.
    let carols = carol.commit(&conv, renewal());
    let out = alice
        .take(EntryKind::Commit, &conv, &carol, carols.commit.as_slice())
        .unwrap();
    let Applied::Fork(fork) = out else {
        panic!("{out:?}")
    };
    let entry = commit_entry(&conv, &carol, carols.commit.as_slice());
    alice.engine.diverge_on_fork(&entry, &fork).unwrap();
    let hub = hub_state(2, &carols, carol.tree(&conv));
    // Carol signed it, and alice's side removed her: never taken.
    let judged = alice.engine.judge(&conv, &hub).unwrap();
    assert!(
        matches!(&judged, Judgement::Refuse(why) if why.contains(&carol.me().to_string())),
        "{judged:?}"
    );
    // Nothing is sealed there: a letter waits.
    let entry = alice.queue(&Target::Conversation(conv), &letter("after the removal"));
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
    let old = alice.commit(&conv, renewal());
    let old_tree = alice.tree(&conv);
    alice.commit(&conv, renewal());
    // A garbage commit makes alice fall out of step; the hub then offers
    // the state of an earlier epoch.
    let garbage = commit_entry(&conv, &bob, &[0, 1, 2]);
    alice.engine.diverge_on_refused_commit(&garbage).unwrap();
    let hub = hub_state(2, &old, old_tree);
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
    // A root of a newer epoch is kept for the client to prove.
    let newer = signer.sign(6, [8; 32], 3, [2; 32]);
    alice
        .engine
        .check_root(Some(&conv), &newer.to_bytes())
        .unwrap();
    assert_eq!(
        alice.engine.home.member_roots().unwrap(),
        vec![newer.to_bytes()]
    );
}

#[test]
fn letters_to_a_person_whose_identity_changed_wait_until_verified() {
    let (alice, bob) = (Dev::new("alice"), Dev::new("bob"));
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    // An administrator's reset: bob's device is revoked by a new
    // generation, founded by another key.
    let reset = Dev::new("bob");
    alice.learn(
        &bob.me().user,
        &DeviceList::new(
            Identity {
                key: SignatureKey(reset.key()),
                generation: 2,
            },
            vec![
                DeviceEntry::new(bob.me().device, bob.key(), 0, 1),
                DeviceEntry::new(reset.me().device, reset.key(), 1, 2),
            ],
        )
        .unwrap(),
    );
    assert_eq!(alice.alerts(), ["identity_changed"]);
    let entry = alice.queue(&Target::Conversation(conv), &letter("held"));
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
    alice.engine.create_group(&id, "", true, None).unwrap();
    alice.commit(&id, adds(vec![bob.key_package()]));
    let to_bob = [bob.me().user.clone()];
    assert_eq!(alice.engine.direct_conversation(&to_bob).unwrap(), Some(id));
    // Someone adds carol: it is no longer the conversation of exactly bob.
    alice.commit(&id, adds(vec![carol.key_package()]));
    assert_eq!(alice.engine.direct_conversation(&to_bob).unwrap(), None);
    // A letter sealed for exactly bob is held back from it.
    let target = Target::Exactly {
        users: to_bob.to_vec(),
        conversation: Some(id),
    };
    let entry = alice.queue(&target, &letter("for bob only"));
    assert!(matches!(
        alice.engine.seal_or_hold(entry).unwrap(),
        Written::Held(_)
    ));
}

#[test]
fn a_letter_that_can_go_nowhere_is_taken_back_whole() {
    let alice = Dev::new("alice");
    let letter = letter("to nobody");
    let target = Target::Exactly {
        users: vec![user("nobody")],
        conversation: None,
    };
    let id = alice.engine.write_letter(&target, &letter).unwrap();
    assert!(
        alice
            .engine
            .home
            .outbound(&letter.message_id)
            .unwrap()
            .is_some()
    );
    alice
        .engine
        .withdraw_letter(&letter.message_id, id)
        .unwrap();
    assert!(alice.engine.home.outbox().unwrap().is_empty());
    assert!(alice.engine.home.letter(id).is_err());
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
    let update = copy.commit(&conv, renewal());
    // Bob's device: a commit signed by its own key that it did not make.
    let out = bob.take(EntryKind::Commit, &conv, &copy, update.commit.as_slice());
    assert!(matches!(out, Err(crate::ClientError::Cloned(_))), "{out:?}");
    assert_eq!(bob.epoch(&conv), 1, "not followed");
    // Alice, for whom it is bob renewing his keys, follows it.
    assert!(matches!(
        alice.take(EntryKind::Commit, &conv, &copy, update.commit.as_slice()),
        Ok(Applied::Commit { .. })
    ));
}

/// The mail bridge releases the home between operations and a `valise`
/// command seals beside it: when the bridge takes the home back, the group
/// it kept in memory is stale and must be read again, or its next letter
/// reuses a ratchet generation the command used (bob cannot open it).
#[test]
fn a_home_shared_between_operations_never_seals_from_a_stale_group() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("alice");
    let mut alice = Dev::on_disk(&path, "alice");
    let bob = Dev::new("bob");
    Dev::introduce(&[&alice, &bob]);
    let conv = conversation(&alice, &[&bob]);
    let letter = |from: &Dev, subject| {
        let sealed = from.write(&conv, subject);
        let opened = bob.take(EntryKind::Application, &conv, from, &sealed);
        assert!(
            matches!(opened, Ok(Applied::Letter)),
            "{subject}: {opened:?}"
        );
    };
    letter(&alice, "bridge, group now in memory");
    alice.engine.release().unwrap();
    let command = Dev::open(&path, alice.me().clone(), &alice.key(), 0);
    letter(&command, "the command, from the database");
    drop(command);
    assert_eq!(alice.engine.try_retake().unwrap(), Retake::Changed);
    letter(&alice, "bridge again");
    assert_eq!(
        bob.subjects(),
        [
            "bridge, group now in memory",
            "the command, from the database",
            "bridge again"
        ]
    );
}

// The intruder's moves found reading the code as the intruder would
// (issue 8 review), each now a regression test.

/// The entry of `device` in `entries`.
fn entry_of<'a>(entries: &'a mut [DeviceEntry], device: &Dev) -> &'a mut DeviceEntry {
    entries
        .iter_mut()
        .find(|e| e.device == device.me().device)
        .unwrap()
}

/// `by`'s signed revocation of `device`, made when its user's two devices
/// (numbers 0 and 1, of identity `id`) existed.
fn revocation(device: &Dev, by: &Dev, id: &Identity) -> Revocation {
    let message = revocation_message(&device.me().user, id, &device.me().device, &device.key(), 2);
    Revocation {
        at: 2,
        by: Some(by.me().device),
        signature: Some(by.sign(&message)),
    }
}

/// A user of two devices: `first` founds the identity (number 0), `second`
/// (number 1) is approved by it.
fn two_devices(first: &Dev, second: &Dev) -> (Identity, Vec<DeviceEntry>) {
    let list = second_device(first, second, true);
    (list.identity().clone(), list.devices().to_vec())
}

#[test]
fn a_revocation_the_server_undoes_is_refused_and_alerted() {
    let (alice, laptop, phone) = (Dev::new("alice"), Dev::new("bob"), Dev::new("bob"));
    let bob = user("bob");
    let (id, entries) = two_devices(&laptop, &phone);
    let honest = DeviceList::new(id.clone(), entries.clone()).unwrap();
    let mut revoked = entries;
    entry_of(&mut revoked, &phone).revocation = Some(revocation(&phone, &laptop, &id));
    alice.learn(&bob, &DeviceList::new(id, revoked).unwrap());
    // The server publishes bob's list again without the revocation.
    assert!(alice.engine.record_proven(&bob, &honest, 6).is_err());
    assert_eq!(
        alice.engine.doubt(phone.me(), &phone.key()).unwrap(),
        Some(super::identity::Doubt::Revoked),
        "what it knew stays"
    );
    assert_eq!(alice.alerts(), ["directory_conflict"]);
}

#[test]
fn a_revoked_device_approves_nothing_the_server_numbers_for_it() {
    let (a, b, x) = (Dev::new("bob"), Dev::new("bob"), Dev::new("bob"));
    let bob = user("bob");
    let (id, mut entries) = two_devices(&a, &b);
    entry_of(&mut entries, &a).revocation = Some(revocation(&a, &b, &id));
    // The thief, holding a's key, approves x, which the server numbers 2.
    let mut ex = DeviceEntry::new(x.me().device, x.key(), 2, 1);
    ex.approval = Some(Approval {
        by: a.me().device,
        signature: a.sign(&approval_message(&bob, &id, &x.me().device, &x.key(), 2)),
    });
    entries.push(ex.clone());
    let status = |entries: Vec<DeviceEntry>| {
        valise_directory::identity::devices(&bob, &DeviceList::new(id.clone(), entries).unwrap())
            .status(&x.me().device)
    };
    assert_eq!(status(entries.clone()), Some(DeviceStatus::Pending));
    // Raising `at` breaks b's signature: then a approves nothing at all.
    let mut raised = entries.clone();
    entry_of(&mut raised, &a).revocation.as_mut().unwrap().at = 3;
    assert_eq!(status(raised), Some(DeviceStatus::Pending));
    // Numbering x into the past: lists with a gap or a reused number are
    // refused outright.
    let mut gap = entries.clone();
    gap.last_mut().unwrap().number = 5;
    assert!(DeviceList::new(id.clone(), gap).is_err());
    let mut reused = entries;
    reused.last_mut().unwrap().number = 1;
    assert!(DeviceList::new(id, reused).is_err());
}

#[test]
fn a_letter_from_a_revoked_device_is_refused_even_from_a_past_epoch() {
    let (alice, laptop, phone) = (Dev::new("alice"), Dev::new("bob"), Dev::new("bob"));
    let bob = user("bob");
    let (id, entries) = two_devices(&laptop, &phone);
    let list = DeviceList::new(id.clone(), entries.clone()).unwrap();
    for d in [&alice, &laptop, &phone] {
        d.learn(&alice.me().user, &alice.entry());
        d.learn(&bob, &list);
    }
    let conv = conversation(&alice, &[&laptop, &phone]);
    // A thief's copy of the phone writes; the server holds the letter back.
    let forged = phone.write(&conv, "wire the money to account X");
    let mut revoked = entries;
    entry_of(&mut revoked, &phone).revocation = Some(revocation(&phone, &laptop, &id));
    let revoked = DeviceList::new(id, revoked).unwrap();
    alice.learn(&bob, &revoked);
    laptop.learn(&bob, &revoked);
    let removal = laptop.commit(&conv, removal_of(&phone));
    alice
        .take(EntryKind::Commit, &conv, &laptop, removal.commit.as_slice())
        .unwrap();
    let out = alice
        .take(EntryKind::Application, &conv, &phone, &forged)
        .unwrap();
    assert!(matches!(out, Applied::NeedsProof(_)), "{out:?}");
    assert!(alice.subjects().is_empty());
}

#[test]
fn a_removed_person_does_not_come_back_under_another_device() {
    let (alice, bob, m1, m2) = (
        Dev::new("alice"),
        Dev::new("bob"),
        Dev::new("mallory"),
        Dev::new("mallory"),
    );
    let mallory = user("mallory");
    let (id, entries) = two_devices(&m1, &m2);
    let mlist = DeviceList::new(id, entries).unwrap();
    for d in [&alice, &bob, &m1, &m2] {
        d.learn(&alice.me().user, &alice.entry());
        d.learn(&bob.me().user, &bob.entry());
        d.learn(&mallory, &mlist);
    }
    let conv = conversation(&alice, &[&bob, &m1]);
    alice.commit(&conv, removal_of(&m1));
    // The hub restored to epoch 1: m1 adds m2, then m2 removes m1.
    let add = m1.commit(&conv, adds(vec![m2.key_package()]));
    m2.join(&conv, &m1, add.welcome.unwrap().as_slice(), m1.tree(&conv));
    let swap = m2.commit(&conv, removal_of(&m1));
    let (entry, out) = alice.take_entry(&conv, EntryKind::Commit, &m1, add.commit.as_slice());
    let Ok(Applied::Fork(fork)) = out else {
        panic!("a fork: {out:?}")
    };
    alice.engine.diverge_on_fork(&entry, &fork).unwrap();
    let (entry, out) = alice.take_entry(&conv, EntryKind::Commit, &m2, swap.commit.as_slice());
    assert!(out.is_err());
    alice.engine.diverge_on_refused_commit(&entry).unwrap();
    let hub = hub_state(3, &swap, m2.tree(&conv));
    let judged = alice.engine.judge(&conv, &hub).unwrap();
    assert!(matches!(&judged, Judgement::Refuse(_)), "{judged:?}");
}

#[test]
fn a_device_renews_the_leaf_it_joined_with() {
    let dir = tempfile::tempdir().unwrap();
    let alice = Dev::new("alice");
    let bob = Dev::on_disk(&dir.path().join("bob"), "bob");
    Dev::introduce(&[&alice, &bob]);
    // A thief copies bob's home after it made a key package, before alice
    // adds bob with it: the copy opens the Welcome.
    let kp = bob.key_package();
    let thief = bob.copy(&dir.path().join("bob"), &dir.path().join("thief"));
    let conv = ConversationId::from_bytes(rand::random());
    alice
        .engine
        .create_group(&conv, "new", false, None)
        .unwrap();
    let welcome = alice.commit(&conv, adds(vec![kp])).welcome.unwrap();
    bob.join(&conv, &alice, welcome.as_slice(), alice.tree(&conv));
    thief.join(&conv, &alice, welcome.as_slice(), alice.tree(&conv));
    // Bob renews that leaf at his very next sync, not a day later.
    let due = bob.engine.home.updates_due(0).unwrap();
    assert_eq!(due, vec![conv]);
    let update = bob.commit(&conv, renewal());
    alice
        .take(EntryKind::Commit, &conv, &bob, update.commit.as_slice())
        .unwrap();
    assert!(
        thief
            .take(EntryKind::Commit, &conv, &bob, update.commit.as_slice())
            .is_err()
    );
    // A letter of the new epoch can only wait, unread, for a commit the
    // thief cannot follow.
    let letter = alice.write(&conv, "after the renewal");
    assert!(matches!(
        thief.take(EntryKind::Application, &conv, &alice, &letter),
        Ok(Applied::Held)
    ));
    assert!(thief.subjects().is_empty());
}
