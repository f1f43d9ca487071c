//! How Valise uses MLS: the one ciphersuite, the group configuration, the
//! credential that names a device, and parsing of MLS objects from outside.

use crate::error::{ClientError, Result};
use crate::provider::Provider;
use openmls::prelude::tls_codec::Deserialize as _;
use openmls::prelude::*;
use openmls_basic_credential::SignatureKeyPair;
use valise_proto::api::SubmitCommit;
use valise_proto::{ConversationId, DeviceAddress};

/// Post-quantum hybrid (X-Wing: X25519 + ML-KEM-768) by default, because
/// diplomatic traffic recorded today must stay secret later (invariant I4).
pub const CIPHERSUITE: Ciphersuite = Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519;

/// One-time key packages uploaded at enrolment and on each restock.
pub const KEY_PACKAGE_BATCH: usize = 10;
/// Restock when the server holds fewer than this many.
pub const KEY_PACKAGE_LOW_WATER: u64 = 5;

/// Handshake messages go out as PublicMessages so that the hub can follow
/// each group's public state; application messages are always encrypted.
fn wire_format() -> WireFormatPolicy {
    MIXED_PLAINTEXT_WIRE_FORMAT_POLICY
}

/// What every Valise leaf supports: our one suite, and the last-resort
/// key-package extension (which must be listed to be used).
fn capabilities() -> Capabilities {
    Capabilities::new(
        None,
        Some(&[CIPHERSUITE]),
        Some(&[ExtensionType::LastResort]),
        None,
        None,
    )
}

/// Past epochs whose message secrets a device keeps, so that letters a
/// server delivers after the next commit (reordered, or sent just before
/// it) still open. Bounded: older epochs' keys are gone (forward secrecy).
pub const MAX_PAST_EPOCHS: usize = 3;

/// The tree travels beside the Welcome (the hub keeps it), not inside it:
/// the ratchet-tree extension makes adding N members O(N²).
pub fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(false)
        .wire_format_policy(wire_format())
        .capabilities(capabilities())
        .build()
}

pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(false)
        .wire_format_policy(wire_format())
        .build()
}

pub fn group_id(conv: &ConversationId) -> GroupId {
    GroupId::from_slice(conv.as_bytes())
}

pub fn credential(me: &DeviceAddress, signer: &SignatureKeyPair) -> CredentialWithKey {
    CredentialWithKey {
        credential: BasicCredential::new(me.credential_identity()).into(),
        signature_key: signer.public().into(),
    }
}

/// The device a credential names; anything else is refused.
pub fn device_of(credential: &Credential) -> Result<DeviceAddress> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| ClientError::Mls("credential is not a basic credential".into()))?;
    Ok(DeviceAddress::from_credential_identity(basic.identity())?)
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

    fn from_bundle(bundle: CommitMessageBundle) -> Result<Self> {
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

/// Stages a commit that adds and removes these devices (pending until the
/// hub accepts it).
pub fn stage_commit(
    group: &mut MlsGroup,
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    adds: Vec<KeyPackage>,
    removes: Vec<LeafNodeIndex>,
) -> Result<StagedCommit> {
    let bundle = group
        .commit_builder()
        .propose_adds(adds)
        .propose_removals(removes)
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
/// replacing this device's old leaf (resync). The new group is merged at
/// once (openmls); the hub may still refuse the commit.
pub fn rejoin(
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    me: &DeviceAddress,
    group_info: &[u8],
    tree: &[u8],
) -> Result<(MlsGroup, StagedCommit)> {
    let MlsMessageBodyIn::GroupInfo(info) = parse_message(group_info)?.extract() else {
        return Err(ClientError::Protocol(
            "group info is not a GroupInfo".into(),
        ));
    };
    if info.ciphersuite() != CIPHERSUITE {
        return Err(ClientError::Mls(format!(
            "refusing to rejoin with ciphersuite {:?}",
            info.ciphersuite()
        )));
    }
    let (group, bundle) = MlsGroup::external_commit_builder()
        .with_ratchet_tree(parse_tree(tree)?)
        .with_config(join_config())
        .build_group(p, info, credential(me, signer))
        .map_err(ClientError::mls)?
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

/// Makes a key package (and stores its private keys in the home).
pub fn key_package(
    p: &Provider<'_>,
    signer: &SignatureKeyPair,
    me: &DeviceAddress,
    last_resort: bool,
) -> Result<Vec<u8>> {
    let mut builder = KeyPackage::builder().leaf_node_capabilities(capabilities());
    if last_resort {
        builder = builder.mark_as_last_resort();
    }
    let bundle = builder
        .build(CIPHERSUITE, p, signer, credential(me, signer))
        .map_err(ClientError::mls)?;
    serialize(bundle.key_package())
}

/// Parses and verifies a key package claimed for `expected`.
pub fn verify_key_package(
    p: &Provider<'_>,
    bytes: &[u8],
    expected: &DeviceAddress,
) -> Result<KeyPackage> {
    let kp = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(ClientError::mls)?
        .validate(p.crypto(), ProtocolVersion::Mls10)
        .map_err(ClientError::mls)?;
    if kp.ciphersuite() != CIPHERSUITE {
        return Err(ClientError::Mls(format!(
            "key package for {expected} uses ciphersuite {:?}, expected {CIPHERSUITE:?}",
            kp.ciphersuite()
        )));
    }
    let named = device_of(kp.leaf_node().credential())?;
    if &named != expected {
        return Err(ClientError::Mls(format!(
            "key package claimed for {expected} names {named}"
        )));
    }
    Ok(kp)
}

pub fn serialize(value: &impl tls_codec::Serialize) -> Result<Vec<u8>> {
    value.tls_serialize_detached().map_err(ClientError::mls)
}

pub fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn> {
    MlsMessageIn::tls_deserialize_exact(bytes).map_err(ClientError::mls)
}

pub fn parse_tree(bytes: &[u8]) -> Result<RatchetTreeIn> {
    RatchetTreeIn::tls_deserialize_exact(bytes).map_err(ClientError::mls)
}
