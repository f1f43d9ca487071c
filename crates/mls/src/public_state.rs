//! Following one group's public state without any of its secrets: openmls'
//! `PublicGroup` over an in-memory store that is saved as one blob.
//!
//! Groups run without the ratchet-tree extension, so whoever hands joiners
//! the tree (the hub) must track every accepted commit exactly; a device out
//! of step with the hub can follow the same way.

use crate::credential::{check_names, device_of};
use crate::group::group_id;
use crate::message::{parse_as, parse_group_info, parse_tree, serialize};
use crate::{Policy, Refusal};
use openmls::prelude::{
    Ciphersuite, GroupContext, MlsMessageBodyIn, OpenMlsSignaturePublicKey,
    ProcessedMessageContent, ProposalStore, PublicGroup, Sender, Verifiable as _,
};
use openmls_memory_storage::MemoryStorage;
use openmls_traits::crypto::OpenMlsCrypto;
use std::collections::{BTreeSet, HashMap};
use valise_proto::{ConversationId, DeviceAddress};

/// The public state of one group.
pub struct PublicState {
    group: PublicGroup,
    storage: MemoryStorage,
}

impl std::fmt::Debug for PublicState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PublicState")
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

impl PublicState {
    /// Starts following a group from a GroupInfo and the tree it describes
    /// (the GroupInfo's signature and tree hash are checked), at any epoch.
    pub fn follow(
        crypto: &impl OpenMlsCrypto,
        policy: &Policy,
        id: &ConversationId,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<Self, Refusal> {
        let info = parse_group_info(group_info)?;
        let tree = parse_tree(ratchet_tree)?;
        let storage = MemoryStorage::default();
        let (group, _info) =
            PublicGroup::from_external(crypto, &storage, tree, info, ProposalStore::new())
                .map_err(|e| Refusal(format!("group info or tree is invalid: {e}")))?;
        if *group.group_id() != group_id(id) {
            return Err(Refusal::new("group id is not the conversation id"));
        }
        policy.check_suite(group.ciphersuite())?;
        Ok(Self { group, storage })
    }

    /// Starts following a new group from its epoch-0 GroupInfo and tree.
    pub fn create(
        crypto: &impl OpenMlsCrypto,
        policy: &Policy,
        id: &ConversationId,
        group_info: &[u8],
        ratchet_tree: &[u8],
    ) -> Result<Self, Refusal> {
        let state = Self::follow(crypto, policy, id, group_info, ratchet_tree)?;
        if state.epoch() != 0 {
            return Err(Refusal::new("a new conversation starts at epoch 0"));
        }
        Ok(state)
    }

    /// Reloads a group from its state blob ([`PublicState::state`]).
    pub fn load(id: &ConversationId, state: &[u8]) -> Result<Self, Refusal> {
        let storage = MemoryStorage::default();
        let map =
            decode_state(state).ok_or_else(|| Refusal::new("stored group state is corrupt"))?;
        match storage.values.write() {
            Ok(mut values) => *values = map,
            Err(_) => return Err(Refusal::new("group state lock poisoned")),
        }
        let group = PublicGroup::load(&storage, &group_id(id))
            .map_err(|e| Refusal(format!("stored group state: {e}")))?
            .ok_or_else(|| Refusal::new("stored group state is incomplete"))?;
        Ok(Self { group, storage })
    }

    /// The state blob to store: every storage entry, sorted, length-prefixed.
    pub fn state(&self) -> Result<Vec<u8>, Refusal> {
        let values = self
            .storage
            .values
            .read()
            .map_err(|_| Refusal::new("group state lock poisoned"))?;
        Ok(encode_state(&values))
    }

    pub fn epoch(&self) -> u64 {
        self.group.group_context().epoch().as_u64()
    }

    pub fn ciphersuite(&self) -> Ciphersuite {
        self.group.ciphersuite()
    }

    pub fn group_context(&self) -> &GroupContext {
        self.group.group_context()
    }

    /// Every member leaf; an unparsable credential is refused.
    pub fn leaves(&self) -> Result<Vec<Leaf>, Refusal> {
        self.group
            .members()
            .map(|m| {
                Ok(Leaf {
                    device: device_of(&m.credential)?,
                    signature_key: m.signature_key,
                })
            })
            .collect()
    }

    /// The ratchet tree (TLS bytes), for joiners.
    pub fn ratchet_tree(&self) -> Result<Vec<u8>, Refusal> {
        serialize(&self.group.export_ratchet_tree())
    }

    /// Processes and merges a commit made by a member, or by external
    /// commit to rejoin (then the devices must stay the same: a device of
    /// the group replacing its own leaf); returns how and by which device.
    /// With `expected`, the committer must be that device with that
    /// signature key (the hub knows who called it). On error the state may
    /// be half changed: drop it, reload from the stored blob.
    pub fn apply_commit(
        &mut self,
        crypto: &impl OpenMlsCrypto,
        commit: &[u8],
        expected: Option<(&DeviceAddress, &[u8])>,
    ) -> Result<(Committer, DeviceAddress), Refusal> {
        let MlsMessageBodyIn::PublicMessage(pm) = parse_as("commit", commit)?.extract() else {
            return Err(Refusal::new("commit is not a PublicMessage"));
        };
        let processed = self
            .group
            .process_message(crypto, pm)
            .map_err(|e| Refusal(format!("commit is invalid: {e}")))?;
        let committer = match *processed.sender() {
            Sender::Member(index) => {
                let leaf = self
                    .group
                    .leaf(index)
                    .ok_or_else(|| Refusal::new("sender leaf is empty"))?;
                if let Some((caller, caller_key)) = expected {
                    check_names(leaf.credential(), caller)?;
                    if leaf.signature_key().as_slice() != caller_key {
                        return Err(Refusal::new("sender leaf key is not the caller's"));
                    }
                }
                Committer::Member
            }
            // Its new leaf's key is checked with every leaf after the merge.
            Sender::NewMemberCommit => {
                if let Some((caller, _)) = expected {
                    check_names(processed.credential(), caller)?;
                }
                Committer::Rejoined
            }
            _ => return Err(Refusal::new("only members' commits are accepted")),
        };
        let by = device_of(processed.credential())?;
        let ProcessedMessageContent::StagedCommitMessage(staged) = processed.into_content() else {
            return Err(Refusal::new("message is not a commit"));
        };
        let before = self.devices()?;
        self.group
            .merge_commit(&self.storage, *staged)
            .map_err(|e| Refusal(format!("commit does not merge: {e}")))?;
        if committer == Committer::Rejoined && self.devices()? != before {
            return Err(Refusal::new(
                "an external commit may only bring back a device of the conversation",
            ));
        }
        Ok((committer, by))
    }

    fn devices(&self) -> Result<BTreeSet<DeviceAddress>, Refusal> {
        Ok(self.leaves()?.into_iter().map(|l| l.device).collect())
    }

    /// Checks a GroupInfo of the current epoch: of exactly this group state
    /// (the tree hash included), with the external public key that lets a
    /// member rejoin from it, signed by the committer (`signer_key`, the
    /// key its leaf has in the new state).
    pub fn check_group_info(
        &self,
        crypto: &impl OpenMlsCrypto,
        group_info: &[u8],
        signer_key: &[u8],
    ) -> Result<(), Refusal> {
        let info = parse_group_info(group_info)?;
        if info.group_context() != self.group.group_context() {
            return Err(Refusal::new(
                "group info is not of the epoch the commit starts",
            ));
        }
        if info.extensions().external_pub().is_none() {
            return Err(Refusal::new("group info lacks the external public key"));
        }
        let key = OpenMlsSignaturePublicKey::from_signature_key(
            signer_key.to_vec().into(),
            self.group.ciphersuite().signature_algorithm(),
        );
        info.verify(crypto, &key)
            .map_err(|e| Refusal(format!("group info is not signed by the committer: {e}")))?;
        Ok(())
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
