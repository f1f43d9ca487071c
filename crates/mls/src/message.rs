//! MLS messages from outside: parsing, and the checks that need no group
//! state.

use crate::Refusal;
use crate::group::group_id;
use openmls::messages::group_info::VerifiableGroupInfo;
use openmls::prelude::tls_codec::{self, Deserialize as _};
use openmls::prelude::{
    ContentType, MlsMessageBodyIn, MlsMessageIn, ProtocolMessage, RatchetTreeIn,
};
use valise_proto::ConversationId;

/// Parses an MLS message (any kind).
pub fn parse_message(bytes: &[u8]) -> Result<MlsMessageIn, Refusal> {
    parse_as("MLS message", bytes)
}

/// Parses an MLS message; a refusal names it `what`.
pub(crate) fn parse_as(what: &str, bytes: &[u8]) -> Result<MlsMessageIn, Refusal> {
    MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| Refusal(format!("{what} does not parse: {e}")))
}

/// Parses a ratchet tree (it travels beside Welcomes and GroupInfos).
pub fn parse_tree(bytes: &[u8]) -> Result<RatchetTreeIn, Refusal> {
    RatchetTreeIn::tls_deserialize_exact(bytes)
        .map_err(|e| Refusal(format!("ratchet_tree does not parse: {e}")))
}

/// Parses a GroupInfo message (not yet verified).
pub(crate) fn parse_group_info(bytes: &[u8]) -> Result<VerifiableGroupInfo, Refusal> {
    match parse_as("group_info", bytes)?.extract() {
        MlsMessageBodyIn::GroupInfo(info) => Ok(info),
        _ => Err(Refusal::new("group_info is not a GroupInfo message")),
    }
}

/// The TLS bytes of an MLS value.
pub fn serialize(value: &impl tls_codec::Serialize) -> Result<Vec<u8>, Refusal> {
    value
        .tls_serialize_detached()
        .map_err(|e| Refusal(format!("MLS value does not serialise: {e}")))
}

/// Checks the framing of an application message for `id` and returns its
/// epoch. The content is encrypted: only members can check the rest.
pub fn application_epoch(id: &ConversationId, message: &[u8]) -> Result<u64, Refusal> {
    let MlsMessageBodyIn::PrivateMessage(pm) = parse_as("message", message)?.extract() else {
        return Err(Refusal::new("message is not a PrivateMessage"));
    };
    let pm = ProtocolMessage::from(pm);
    if *pm.group_id() != group_id(id) {
        return Err(Refusal::new("message is for another group"));
    }
    if pm.content_type() != ContentType::Application {
        return Err(Refusal::new("handshake messages go to /commits"));
    }
    Ok(pm.epoch().as_u64())
}

/// Checks that bytes are a Welcome message (only its joiners can open it).
pub fn check_welcome(bytes: &[u8]) -> Result<(), Refusal> {
    match parse_as("welcome", bytes)?.extract() {
        MlsMessageBodyIn::Welcome(_) => Ok(()),
        _ => Err(Refusal::new("welcome is not a Welcome message")),
    }
}
