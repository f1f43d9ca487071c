//! How Valise groups are configured, the same on every device.

use crate::suite::{CIPHERSUITE, capabilities};
use openmls::prelude::{
    GroupId, MIXED_PLAINTEXT_WIRE_FORMAT_POLICY, MlsGroupCreateConfig, MlsGroupJoinConfig,
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
pub fn create_config() -> MlsGroupCreateConfig {
    MlsGroupCreateConfig::builder()
        .ciphersuite(CIPHERSUITE)
        .max_past_epochs(MAX_PAST_EPOCHS)
        .use_ratchet_tree_extension(false)
        .wire_format_policy(WIRE_FORMAT_POLICY)
        .capabilities(capabilities())
        .build()
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
