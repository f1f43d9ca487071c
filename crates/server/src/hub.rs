//! The hub's view of MLS: it validates what devices upload (key packages,
//! group infos, commits, application framing) and follows each group's
//! public state with openmls' `PublicGroup`, without any group secret.
//!
//! Groups run without the ratchet-tree extension, so the hub is where joiners
//! get the tree; it must therefore track every accepted commit exactly.

use openmls::prelude::tls_codec::{Deserialize as _, Serialize as _};
use openmls::prelude::*;
use openmls_libcrux_crypto::CryptoProvider;
use openmls_memory_storage::MemoryStorage;
use std::collections::{BTreeSet, HashMap};
use valise_proto::{ConversationId, DeviceAddress};

/// Why MLS input was refused; mapped to `invalid_mls` on the wire.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct MlsRefusal(pub String);

fn refuse(msg: impl Into<String>) -> MlsRefusal {
    MlsRefusal(msg.into())
}

/// The ciphersuites this server lets groups and key packages use.
#[derive(Debug, Clone)]
pub struct Policy {
    pub ciphersuites: Vec<Ciphersuite>,
}

impl Default for Policy {
    // Post-quantum by default (I4); classic suites only when configured.
    fn default() -> Self {
        Self {
            ciphersuites: vec![Ciphersuite::MLS_256_XWING_CHACHA20POLY1305_SHA256_Ed25519],
        }
    }
}

impl Policy {
    fn check_suite(&self, cs: Ciphersuite) -> Result<(), MlsRefusal> {
        if self.ciphersuites.contains(&cs) {
            Ok(())
        } else {
            Err(refuse(format!("ciphersuite {cs:?} is not allowed here")))
        }
    }
}

/// Checks one uploaded key package: signature, suite, the credential naming
/// exactly this device, and its signature key.
pub fn check_key_package(
    crypto: &CryptoProvider,
    policy: &Policy,
    bytes: &[u8],
    device: &DeviceAddress,
    signature_key: &[u8],
    want_last_resort: bool,
) -> Result<(), MlsRefusal> {
    let kp = KeyPackageIn::tls_deserialize_exact(bytes)
        .map_err(|e| refuse(format!("key package does not parse: {e}")))?
        .validate(crypto, ProtocolVersion::Mls10)
        .map_err(|e| refuse(format!("key package is invalid: {e}")))?;
    policy.check_suite(kp.ciphersuite())?;
    let leaf = kp.leaf_node();
    check_credential(leaf.credential(), device)?;
    if leaf.signature_key().as_slice() != signature_key {
        return Err(refuse("key package signature key is not the device's"));
    }
    if want_last_resort && !kp.last_resort() {
        return Err(refuse(
            "last-resort key package lacks the last_resort extension",
        ));
    }
    Ok(())
}

/// The credential must be a basic credential naming `device`.
fn check_credential(credential: &Credential, device: &DeviceAddress) -> Result<(), MlsRefusal> {
    let identity = credential_address(credential)?;
    if identity != *device {
        return Err(refuse(format!("credential names {identity}, not {device}")));
    }
    Ok(())
}

fn credential_address(credential: &Credential) -> Result<DeviceAddress, MlsRefusal> {
    let basic = BasicCredential::try_from(credential.clone())
        .map_err(|_| refuse("credential is not a basic credential"))?;
    DeviceAddress::from_credential_identity(basic.identity())
        .map_err(|e| refuse(format!("credential identity: {e}")))
}

/// The public state of one group, as the hub follows it.
pub struct HubGroup {
    group: PublicGroup,
    storage: MemoryStorage,
}

impl std::fmt::Debug for HubGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubGroup")
            .field("epoch", &self.epoch())
            .finish_non_exhaustive()
    }
}

/// Who made an accepted commit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committer {
    /// A member, from its leaf.
    Member,
    /// A device by external commit, replacing its own leaf (resync after it
    /// lost track of the group): the roster must stay the same.
    Rejoined,
}

/// One member leaf: who and with which signature key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Leaf {
    pub device: DeviceAddress,
    pub signature_key: Vec<u8>,
}

impl HubGroup {
    /// Starts following a new group from its epoch-0 GroupInfo and tree.
    pub fn create(
        crypto: &CryptoProvider,
        policy: &Policy,
        id: &ConversationId,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<Self, MlsRefusal> {
        let msg = MlsMessageIn::tls_deserialize_exact(group_info)
            .map_err(|e| refuse(format!("group_info does not parse: {e}")))?;
        let MlsMessageBodyIn::GroupInfo(vgi) = msg.extract() else {
            return Err(refuse("group_info is not a GroupInfo message"));
        };
        let tree = RatchetTreeIn::tls_deserialize_exact(ratchet_tree)
            .map_err(|e| refuse(format!("ratchet_tree does not parse: {e}")))?;
        let storage = MemoryStorage::default();
        let (group, _info) =
            PublicGroup::from_external(crypto, &storage, tree, vgi, ProposalStore::new())
                .map_err(|e| refuse(format!("group info or tree is invalid: {e}")))?;
        if group.group_id().as_slice() != id.as_bytes() {
            return Err(refuse("group id is not the conversation id"));
        }
        if group.group_context().epoch().as_u64() != 0 {
            return Err(refuse("a new conversation starts at epoch 0"));
        }
        policy.check_suite(group.ciphersuite())?;
        Ok(Self { group, storage })
    }

    /// Reloads a group from its stored state blob.
    pub fn load(id: &ConversationId, state: &[u8]) -> Result<Self, MlsRefusal> {
        let storage = MemoryStorage::default();
        let map = decode_state(state).ok_or_else(|| refuse("stored group state is corrupt"))?;
        match storage.values.write() {
            Ok(mut values) => *values = map,
            Err(_) => return Err(refuse("group state lock poisoned")),
        }
        let group = PublicGroup::load(&storage, &GroupId::from_slice(id.as_bytes()))
            .map_err(|e| refuse(format!("stored group state: {e}")))?
            .ok_or_else(|| refuse("stored group state is incomplete"))?;
        Ok(Self { group, storage })
    }

    /// The state blob to store: every storage entry, sorted, length-prefixed.
    pub fn state(&self) -> Result<Vec<u8>, MlsRefusal> {
        let values = self
            .storage
            .values
            .read()
            .map_err(|_| refuse("group state lock poisoned"))?;
        Ok(encode_state(&values))
    }

    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    pub fn ciphersuite(&self) -> u16 {
        u16::from(self.group.ciphersuite())
    }

    /// Every member leaf; an unparsable credential is refused.
    pub fn leaves(&self) -> Result<Vec<Leaf>, MlsRefusal> {
        self.group
            .members()
            .map(|m| {
                Ok(Leaf {
                    device: credential_address(&m.credential)?,
                    signature_key: m.signature_key,
                })
            })
            .collect()
    }

    /// The ratchet tree (TLS bytes), for joiners.
    pub fn ratchet_tree(&self) -> Result<Vec<u8>, MlsRefusal> {
        self.group
            .export_ratchet_tree()
            .tls_serialize_detached()
            .map_err(|e| refuse(format!("tree does not serialise: {e}")))
    }

    /// Processes and merges a commit that `caller` made as a member, or by
    /// external commit to rejoin (then the devices must stay the same: a
    /// device of the group replacing its own leaf). On error the group may
    /// be half changed: drop it, reload from the stored state.
    pub fn apply_commit(
        &mut self,
        crypto: &CryptoProvider,
        commit: &[u8],
        caller: &DeviceAddress,
        caller_key: &[u8],
    ) -> Result<Committer, MlsRefusal> {
        let msg = MlsMessageIn::tls_deserialize_exact(commit)
            .map_err(|e| refuse(format!("commit does not parse: {e}")))?;
        let MlsMessageBodyIn::PublicMessage(pm) = msg.extract() else {
            return Err(refuse("commit is not a PublicMessage"));
        };
        let processed = self
            .group
            .process_message(crypto, pm)
            .map_err(|e| refuse(format!("commit is invalid: {e}")))?;
        let committer = match *processed.sender() {
            Sender::Member(index) => {
                let leaf = self
                    .group
                    .leaf(index)
                    .ok_or_else(|| refuse("sender leaf is empty"))?;
                check_credential(leaf.credential(), caller)?;
                if leaf.signature_key().as_slice() != caller_key {
                    return Err(refuse("sender leaf key is not the caller's"));
                }
                Committer::Member
            }
            // Its new leaf's key is checked with every leaf after the merge.
            Sender::NewMemberCommit => {
                check_credential(processed.credential(), caller)?;
                Committer::Rejoined
            }
            _ => return Err(refuse("only members' commits are accepted")),
        };
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(refuse("message is not a commit"));
        };
        let before = self.devices()?;
        self.group
            .merge_commit(&self.storage, *staged)
            .map_err(|e| refuse(format!("commit does not merge: {e}")))?;
        if committer == Committer::Rejoined && self.devices()? != before {
            return Err(refuse(
                "an external commit may only bring back a device of the conversation",
            ));
        }
        Ok(committer)
    }

    fn devices(&self) -> Result<BTreeSet<DeviceAddress>, MlsRefusal> {
        Ok(self.leaves()?.into_iter().map(|l| l.device).collect())
    }

    /// Checks a GroupInfo of the current epoch: of exactly this group state
    /// (the tree hash included), with the external public key that lets a
    /// member rejoin from it, signed by the committer (`signer_key`, the
    /// key its leaf has in the new state).
    pub fn check_group_info(
        &self,
        crypto: &CryptoProvider,
        group_info: &[u8],
        signer_key: &[u8],
    ) -> Result<(), MlsRefusal> {
        let msg = MlsMessageIn::tls_deserialize_exact(group_info)
            .map_err(|e| refuse(format!("group_info does not parse: {e}")))?;
        let MlsMessageBodyIn::GroupInfo(vgi) = msg.extract() else {
            return Err(refuse("group_info is not a GroupInfo message"));
        };
        if vgi.group_context() != self.group.group_context() {
            return Err(refuse("group info is not of the epoch the commit starts"));
        }
        if vgi.extensions().external_pub().is_none() {
            return Err(refuse("group info lacks the external public key"));
        }
        let key = OpenMlsSignaturePublicKey::from_signature_key(
            signer_key.to_vec().into(),
            self.group.ciphersuite().signature_algorithm(),
        );
        vgi.verify(crypto, &key)
            .map_err(|e| refuse(format!("group info is not signed by the committer: {e}")))?;
        Ok(())
    }
}

/// Checks the framing of an application message for `id` and returns its epoch.
pub fn application_epoch(id: &ConversationId, message: &[u8]) -> Result<u64, MlsRefusal> {
    let msg = MlsMessageIn::tls_deserialize_exact(message)
        .map_err(|e| refuse(format!("message does not parse: {e}")))?;
    let MlsMessageBodyIn::PrivateMessage(pm) = msg.extract() else {
        return Err(refuse("message is not a PrivateMessage"));
    };
    let pm = ProtocolMessage::from(pm);
    if pm.group_id().as_slice() != id.as_bytes() {
        return Err(refuse("message is for another group"));
    }
    if pm.content_type() != ContentType::Application {
        return Err(refuse("handshake messages go to /commits"));
    }
    Ok(pm.epoch().as_u64())
}

/// Checks that bytes are a Welcome message.
pub fn check_welcome(bytes: &[u8]) -> Result<(), MlsRefusal> {
    let msg = MlsMessageIn::tls_deserialize_exact(bytes)
        .map_err(|e| refuse(format!("welcome does not parse: {e}")))?;
    match msg.extract() {
        MlsMessageBodyIn::Welcome(_) => Ok(()),
        _ => Err(refuse("welcome is not a Welcome message")),
    }
}

fn encode_state(values: &HashMap<Vec<u8>, Vec<u8>>) -> Vec<u8> {
    let mut pairs: Vec<_> = values.iter().collect();
    pairs.sort();
    let mut out = Vec::new();
    out.extend_from_slice(&(pairs.len() as u64).to_be_bytes());
    for (k, v) in pairs {
        out.extend_from_slice(&(k.len() as u64).to_be_bytes());
        out.extend_from_slice(k);
        out.extend_from_slice(&(v.len() as u64).to_be_bytes());
        out.extend_from_slice(v);
    }
    out
}

fn decode_state(mut bytes: &[u8]) -> Option<HashMap<Vec<u8>, Vec<u8>>> {
    fn take<'a>(bytes: &mut &'a [u8], n: usize) -> Option<&'a [u8]> {
        if bytes.len() < n {
            return None;
        }
        let (head, tail) = bytes.split_at(n);
        *bytes = tail;
        Some(head)
    }
    fn len(bytes: &mut &[u8]) -> Option<usize> {
        let raw: [u8; 8] = take(bytes, 8)?.try_into().ok()?;
        usize::try_from(u64::from_be_bytes(raw)).ok()
    }
    let count = len(&mut bytes)?;
    let mut map = HashMap::new();
    for _ in 0..count {
        let kl = len(&mut bytes)?;
        let k = take(&mut bytes, kl)?.to_vec();
        let vl = len(&mut bytes)?;
        let v = take(&mut bytes, vl)?.to_vec();
        map.insert(k, v);
    }
    bytes.is_empty().then_some(map)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn state_round_trips_and_refuses_truncation() {
        let mut m = HashMap::new();
        m.insert(b"a".to_vec(), b"1".to_vec());
        m.insert(b"bb".to_vec(), vec![]);
        let enc = encode_state(&m);
        assert_eq!(decode_state(&enc).unwrap(), m);
        assert!(decode_state(&enc[..enc.len() - 1]).is_none());
        assert!(decode_state(&[0xff; 8]).is_none());
    }
}
