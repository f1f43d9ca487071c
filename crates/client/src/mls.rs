//! How this client uses MLS. The policy every party shares (suite,
//! capabilities, group configuration, the credential that names a device,
//! key-package checks, parsing) lives in `valise-mls` and is re-exported
//! here; this module adds what only a device does: its key-package stock,
//! commits staged for the hub, rejoining, and its groups in the home.

use crate::error::{ClientError, Result};
use crate::provider::Provider;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use valise_mls::{Policy, Refusal};
use valise_proto::api::SubmitCommit;
use valise_proto::{ConversationId, DeviceAddress};

pub use valise_mls::{
    CIPHERSUITE, MAX_PAST_EPOCHS, create_config, device_of, group_extensions, group_id,
    join_config, parse_message, parse_tree, policy_hash, serialize,
};

/// One-time key packages uploaded at enrolment and on each restock.
pub const KEY_PACKAGE_BATCH: usize = 10;
/// Restock when the server holds fewer than this many.
pub const KEY_PACKAGE_LOW_WATER: u64 = 5;

impl From<Refusal> for ClientError {
    fn from(e: Refusal) -> Self {
        Self::Mls(e.0)
    }
}

/// This device's credential, with its signature key.
pub fn credential(me: &DeviceAddress, signer: &SignatureKeyPair) -> CredentialWithKey {
    valise_mls::credential(me, signer.public())
}

/// The devices of a group's roster.
pub fn roster(group: &MlsGroup) -> Result<Vec<(LeafNodeIndex, DeviceAddress)>> {
    group
        .members()
        .map(|m| Ok((m.index, device_of(&m.credential)?)))
        .collect()
}

/// The devices of a group's roster with their signature keys.
pub fn roster_keys(group: &MlsGroup) -> Result<Vec<(DeviceAddress, Vec<u8>)>> {
    group
        .members()
        .map(|m| Ok((device_of(&m.credential)?, m.signature_key)))
        .collect()
}

/// A staged commit's messages, serialised for the hub.
pub struct StagedCommit {
    pub commit: Vec<u8>,
    /// For the devices the commit adds.
    pub welcome: Option<Vec<u8>>,
    /// The new epoch's signed GroupInfo with its external public key.
    pub group_info: Vec<u8>,
}

impl StagedCommit {
    /// The hub's request for a commit made at `epoch`.
    pub fn submit(self, epoch: u64) -> SubmitCommit {
        SubmitCommit {
            epoch,
            commit: self.commit.into(),
            welcome: self.welcome.map(Into::into),
            group_info: Some(self.group_info.into()),
        }
    }

    pub(crate) fn from_bundle(bundle: CommitMessageBundle) -> Result<Self> {
        let (commit, welcome, group_info) = bundle.into_messages();
        Ok(Self {
            commit: serialize(&commit)?,
            welcome: welcome.map(|w| serialize(&w)).transpose()?,
            group_info: serialize(
                &group_info.ok_or_else(|| ClientError::Mls("commit without group info".into()))?,
            )?,
        })
    }
}

/// Stages a commit that adds and removes these devices, and renews this
/// device's own leaf if `update` (pending until the hub accepts it).
pub fn stage_commit(
    group: &mut MlsGroup,
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    adds: Vec<KeyPackage>,
    removes: Vec<LeafNodeIndex>,
    update: bool,
) -> Result<StagedCommit> {
    let bundle = group
        .commit_builder()
        .propose_adds(adds)
        .propose_removals(removes)
        .force_self_update(update)
        .load_psks(p.storage())
        .map_err(ClientError::mls)?
        .create_group_info(true)
        .build(p.rand(), p.crypto(), signer, |_| true)
        .map_err(ClientError::mls)?
        .stage_commit(p)
        .map_err(ClientError::mls)?;
    StagedCommit::from_bundle(bundle)
}

/// Rejoins a group from the hub's GroupInfo and tree by external commit,
/// replacing this device's old leaf (resync), with `aad` (the directory
/// root it stands on). The new group is merged at once (openmls); the hub
/// may still refuse the commit.
pub fn rejoin(
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    me: &DeviceAddress,
    group_info: &[u8],
    tree: &[u8],
    aad: Vec<u8>,
) -> Result<(MlsGroup, StagedCommit)> {
    let MlsMessageBodyIn::GroupInfo(info) = parse_message(group_info)?.extract() else {
        return Err(ClientError::Protocol(
            "group info is not a GroupInfo".into(),
        ));
    };
    Policy::default().check_suite(info.ciphersuite())?;
    let (group, bundle) = MlsGroup::external_commit_builder()
        .with_ratchet_tree(parse_tree(tree)?)
        .with_config(join_config())
        .with_aad(aad)
        .build_group(p, info, credential(me, signer))
        .map_err(ClientError::mls)?
        .leaf_node_parameters(valise_mls::leaf_parameters())
        .load_psks(p.storage())
        .map_err(ClientError::mls)?
        .create_group_info(true)
        .build(p.rand(), p.crypto(), signer, |_| true)
        .map_err(ClientError::mls)?
        .finalize(p)
        .map_err(ClientError::mls)?;
    Ok((group, StagedCommit::from_bundle(bundle)?))
}

pub fn load_group(p: &Provider<'_>, conv: &ConversationId) -> Result<Option<MlsGroup>> {
    MlsGroup::load(p.storage(), &group_id(conv)).map_err(ClientError::mls)
}

/// Makes a key package at `now_s` on this device's clock (and stores its
/// private keys in the home).
pub fn key_package(
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    me: &DeviceAddress,
    last_resort: bool,
    now_s: u64,
) -> Result<Vec<u8>> {
    let bundle = valise_mls::key_package::build(p, signer, me, last_resort, now_s)
        .map_err(ClientError::mls)?;
    Ok(serialize(bundle.key_package())?)
}

/// Parses and verifies a key package claimed for `expected`, valid at
/// `now_s` on this device's clock (its key is checked against the key
/// directory afterwards).
pub fn verify_key_package(
    p: &Provider<'_>,
    bytes: &[u8],
    expected: &DeviceAddress,
    now_s: u64,
) -> Result<KeyPackage> {
    let policy = Policy::default();
    let checked =
        valise_mls::key_package::check(p.crypto(), &policy, bytes, expected, None, false, now_s)?;
    Ok(checked.key_package)
}

/// The users of a group's roster as a conversation keeps them (see
/// [`users_key`]).
pub fn members_key(group: &MlsGroup) -> Result<String> {
    let users: Vec<_> = roster(group)?.into_iter().map(|(_, d)| d.user).collect();
    Ok(users_key(users.iter()))
}

/// Users sorted, each once, comma-joined: what `send --to` compares.
pub fn users_key<'a>(users: impl Iterator<Item = &'a valise_proto::UserId>) -> String {
    let set: std::collections::BTreeSet<&str> = users.map(|u| u.as_str()).collect();
    set.into_iter().collect::<Vec<_>>().join(",")
}
