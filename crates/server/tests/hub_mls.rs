//! The hub's MLS checks (valise-mls' `PublicState` and message checks)
//! against real openmls clients configured like Valise's: a new group, an
//! add commit, application framing, group infos, and external commits
//! (only a member's own resync). Key packages: valise-mls' own tests.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_libcrux_crypto::CryptoProvider;
use valise_mls::{
    Committer, Policy, PublicState, application_epoch, check_welcome, create_config, group_id,
    join_config,
};
use valise_proto::ConversationId;

mod common;
use common::Device;

#[test]
fn hub_follows_a_real_group() {
    let crypto = CryptoProvider::new().unwrap();
    let policy = Policy::default();
    let alice = Device::new("alice@mfa.example", 1);
    let bob = Device::new("bob@mfa.example", 2);
    let akey = alice.signer.public().to_vec();

    let kp = bob.key_package(false);
    let bkey = bob.signer.public().to_vec();

    // A new group at epoch 0, configured like the client's (handshakes in
    // the clear so the hub can follow them).
    let id = ConversationId::from_bytes([7; 16]);
    let mut group = MlsGroup::new_with_group_id(
        &alice.provider,
        &alice.signer,
        &create_config(None).unwrap(),
        group_id(&id),
        alice.cred(),
    )
    .unwrap();
    let gi = group
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .unwrap()
        .tls_serialize_detached()
        .unwrap();
    let tree = group
        .export_ratchet_tree()
        .tls_serialize_detached()
        .unwrap();
    let other = ConversationId::from_bytes([8; 16]);
    assert!(PublicState::create(&crypto, &policy, &other, &gi, &tree).is_err());
    let hub = PublicState::create(&crypto, &policy, &id, &gi, &tree).unwrap();
    assert_eq!(hub.epoch(), 0);
    let leaves = hub.leaves().unwrap();
    assert_eq!(leaves.len(), 1);
    assert_eq!(leaves[0].device, alice.addr);
    assert_eq!(leaves[0].signature_key, akey);
    let state = hub.state().unwrap();

    // Alice adds Bob; the hub follows from its stored state.
    let (commit, welcome, _) = group
        .add_members(&alice.provider, &alice.signer, &[kp])
        .unwrap();
    group.merge_pending_commit(&alice.provider).unwrap();
    let commit = commit.tls_serialize_detached().unwrap();
    let welcome = welcome.tls_serialize_detached().unwrap();
    check_welcome(&welcome).unwrap();
    assert!(check_welcome(&commit).is_err());

    let mut hub = PublicState::load(&id, &state).unwrap();
    // Only the committer itself may submit its commit.
    assert!(
        hub.apply_commit(&crypto, &commit, Some((&bob.addr, &bkey)))
            .is_err()
    );
    let mut hub2 = PublicState::load(&id, &state).unwrap();
    assert!(
        hub2.apply_commit(&crypto, &commit, Some((&alice.addr, &bkey)))
            .is_err()
    );
    // C5: a malformed commit (any bit changed) is refused, and the
    // conversation goes on with the real one. Except in the last 66 bytes:
    // the confirmation and membership tags are MACs under epoch secrets the
    // hub does not hold, so only members can check them (docs/PROTOCOL.md).
    let signed = commit.len() - 2 * (1 + 32);
    for i in (0..signed).step_by(3) {
        let mut bad = commit.clone();
        bad[i] ^= 0x10;
        let mut hub = PublicState::load(&id, &state).unwrap();
        assert!(
            hub.apply_commit(&crypto, &bad, Some((&alice.addr, &akey)))
                .is_err(),
            "commit with byte {i} of {} changed was accepted",
            commit.len()
        );
    }
    let mut hub = PublicState::load(&id, &state).unwrap();
    hub.apply_commit(&crypto, &commit, Some((&alice.addr, &akey)))
        .unwrap();
    assert_eq!(hub.epoch(), 1);
    let devices: Vec<_> = hub
        .leaves()
        .unwrap()
        .into_iter()
        .map(|l| l.device)
        .collect();
    assert_eq!(devices, vec![alice.addr.clone(), bob.addr.clone()]);
    // The hub's tree lets Bob join without the ratchet-tree extension.
    let tree = RatchetTreeIn::tls_deserialize_exact(hub.ratchet_tree().unwrap()).unwrap();
    let MlsMessageBodyIn::Welcome(w) = MlsMessageIn::tls_deserialize_exact(&welcome)
        .unwrap()
        .extract()
    else {
        panic!("not a welcome")
    };
    let mut bob_group =
        StagedWelcome::new_from_welcome(&bob.provider, &join_config(), w, Some(tree))
            .unwrap()
            .into_group(&bob.provider)
            .unwrap();
    assert_eq!(bob_group.epoch().as_u64(), 1);
    // Replaying the same commit on the new state is refused.
    let reloaded = hub.state().unwrap();
    let mut hub = PublicState::load(&id, &reloaded).unwrap();
    assert!(
        hub.apply_commit(&crypto, &commit, Some((&alice.addr, &akey)))
            .is_err()
    );

    // Application framing.
    let msg = bob_group
        .create_message(&bob.provider, &bob.signer, b"secret")
        .unwrap()
        .tls_serialize_detached()
        .unwrap();
    assert_eq!(application_epoch(&id, &msg).unwrap(), 1);
    assert!(application_epoch(&other, &msg).is_err());
    assert!(application_epoch(&id, &commit).is_err());

    // The GroupInfo a commit carries must describe the hub's new state.
    let gi1 = group
        .export_group_info(alice.provider.crypto(), &alice.signer, false)
        .unwrap()
        .tls_serialize_detached()
        .unwrap();
    hub.check_group_info(&crypto, &gi1, &akey).unwrap();
    assert!(
        hub.check_group_info(&crypto, &gi, &akey).is_err(),
        "epoch 0's"
    );
    assert!(
        hub.check_group_info(&crypto, &gi1, &bkey).is_err(),
        "signed by another member"
    );

    // A15: an external commit only brings back a device of the group.
    let external = |d: &Device| {
        let MlsMessageBodyIn::GroupInfo(info) =
            MlsMessageIn::tls_deserialize_exact(&gi1).unwrap().extract()
        else {
            panic!("not a group info")
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(hub.ratchet_tree().unwrap()).unwrap();
        let (_, bundle) = MlsGroup::external_commit_builder()
            .with_ratchet_tree(tree)
            .with_config(join_config())
            .build_group(&d.provider, info, d.cred())
            .unwrap()
            .leaf_node_parameters(valise_mls::leaf_parameters())
            .load_psks(d.provider.storage())
            .unwrap()
            .build(d.provider.rand(), d.provider.crypto(), &d.signer, |_| true)
            .unwrap()
            .finalize(&d.provider)
            .unwrap();
        bundle.into_commit().tls_serialize_detached().unwrap()
    };
    let state1 = hub.state().unwrap();
    let carol = Device::new("carol@mfa.example", 3);
    let ckey = carol.signer.public().to_vec();
    let mut outsider = PublicState::load(&id, &state1).unwrap();
    assert!(
        outsider
            .apply_commit(&crypto, &external(&carol), Some((&carol.addr, &ckey)))
            .is_err(),
        "an outsider joined by external commit"
    );
    // Bob, out of step, rejoins: his old leaf is replaced, nobody else changes.
    bob_group.delete(bob.provider.storage()).unwrap();
    let mut resync = PublicState::load(&id, &state1).unwrap();
    let how = resync
        .apply_commit(&crypto, &external(&bob), Some((&bob.addr, &bkey)))
        .unwrap();
    assert_eq!(how, (Committer::Rejoined, bob.addr.clone()));
    assert_eq!(resync.epoch(), 2);
    let devices: Vec<_> = resync
        .leaves()
        .unwrap()
        .into_iter()
        .map(|l| l.device)
        .collect();
    assert_eq!(devices.len(), 2);
    assert!(devices.contains(&alice.addr) && devices.contains(&bob.addr));
}
