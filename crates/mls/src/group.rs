//! How Valise groups are configured, the same on every device.

use crate::Refusal;
use crate::suite::{CIPHERSUITE, POLICY_EXTENSION, capabilities};
use openmls::prelude::{
    Extension, Extensions, GroupContext, GroupId, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY,
    MlsGroupCreateConfig, MlsGroupJoinConfig, RequiredCapabilitiesExtension, UnknownExtension,
    WireFormatPolicy,
};
use valise_proto::ConversationId;

/// Handshake messages go out as PublicMessages so that the hub can follow
/// each group's public state; application messages are always encrypted
/// (MLS sends them as PrivateMessages whatever the policy).
pub const WIRE_FORMAT_POLICY: WireFormatPolicy = MIXED_PLAINTEXT_WIRE_FORMAT_POLICY;

/// Past epochs whose message secrets a device keeps, so that letters a
/// server delivers after the next commit (reordered, or sent just before
/// it) still open. Bounded: older epochs' keys are gone (forward secrecy).
pub const MAX_PAST_EPOCHS: usize = 3;

/// The tree travels beside the Welcome (the hub keeps it), not inside it:
/// the ratchet-tree extension makes adding N members O(N²).
///
/// Every group requires the policy extension of its members' leaves, and a
/// conversation with a ceiling carries its policy hash (`policy`) in the
/// group context from epoch 0.
pub fn create_config(policy: Option<[u8; 32]>) -> Result<MlsGroupCreateConfig, Refusal> {
    Ok(MlsGroupCreateConfig::builder()
        .with_group_context_extensions(group_extensions(policy)?)
        .ciphersuite(CIPHERSUITE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(false)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .capabilities(capabilities())
        .build())
}

/// The group-context extensions of a group with this policy hash.
pub fn group_extensions(policy: Option<[u8; 32]>) -> Result<Extensions<GroupContext>, Refusal> {
    let required = Extension::RequiredCapabilities(RequiredCapabilitiesExtension::new(
        &[POLICY_EXTENSION],
        &[],
        &[],
    ));
    let extensions = match policy {
        Some(hash) => vec![
            required,
            Extension::Unknown(
                valise_proto::policy::POLICY_EXTENSION,
                UnknownExtension(hash.to_vec()),
            ),
        ],
        None => vec![required],
    };
    Extensions::from_vec(extensions).map_err(|e| Refusal(format!("group extensions: {e}")))
}

/// The policy hash a group context carries, if any (any other length
/// than a hash's is carried as it is, and matches no record).
pub fn policy_hash(extensions: &Extensions<GroupContext>) -> Option<Vec<u8>> {
    extensions
        .unknown(valise_proto::policy::POLICY_EXTENSION)
        .map(|UnknownExtension(data)| data.clone())
}

/// As [`create_config`], for a device that joins (by Welcome or by
/// external commit).
pub fn join_config() -> MlsGroupJoinConfig {
    MlsGroupJoinConfig::builder()
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(false)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .build()
}

/// A conversation's group has the conversation's id.
pub fn group_id(conv: &ConversationId) -> GroupId {
    GroupId::from_slice(conv.as_bytes())
}
