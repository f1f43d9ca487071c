//! akd's async `Database` on top of any [`DirectoryStorage`].

use super::codec::{decode_azks, decode_node, encode_azks, encode_node};
use super::{DirectoryStorage, RecordKind, StateQuery, UserState, WriteBatch};
use akd::errors::StorageError;
use akd::storage::types::{
    DbRecord, KeyData, StorageType, ValueState, ValueStateKey, ValueStateRetrievalFlag,
};
use akd::storage::{Database, DbSetState, Storable};
use akd::{AkdLabel, AkdValue};
use std::collections::HashMap;
use std::sync::Arc;

/// Adapts a [`DirectoryStorage`] to akd's `Database` trait.
///
/// The storage calls are synchronous and short; like akd's own CPU-bound
/// work, they run on the task that awaits the directory operation.
pub struct AkdDatabase<S: ?Sized> {
    storage: Arc<S>,
}

impl<S: ?Sized> AkdDatabase<S> {
    pub fn new(storage: Arc<S>) -> Self {
        Self { storage }
    }

    /// The storage underneath.
    pub fn storage(&self) -> &Arc<S> {
        &self.storage
    }
}

impl<S: ?Sized> Clone for AkdDatabase<S> {
    fn clone(&self) -> Self {
        Self {
            storage: self.storage.clone(),
        }
    }
}

fn other(e: impl std::fmt::Display) -> StorageError {
    StorageError::Other(e.to_string())
}

fn to_value_state(s: UserState) -> ValueState {
    DbRecord::build_user_state(
        s.username,
        s.value,
        s.version,
        s.label_len,
        s.label_val,
        s.epoch,
    )
}

fn from_value_state(v: ValueState) -> UserState {
    UserState {
        username: v.username.0,
        epoch: v.epoch,
        version: v.version,
        label_val: v.label.label_val,
        label_len: v.label.label_len,
        value: v.value.0,
    }
}

fn query_of(flag: ValueStateRetrievalFlag) -> StateQuery {
    match flag {
        ValueStateRetrievalFlag::SpecificVersion(v) => StateQuery::Version(v),
        ValueStateRetrievalFlag::SpecificEpoch(e) => StateQuery::Epoch(e),
        ValueStateRetrievalFlag::LeqEpoch(e) => StateQuery::AtOrBefore(e),
        ValueStateRetrievalFlag::MaxEpoch => StateQuery::Latest,
        ValueStateRetrievalFlag::MinEpoch => StateQuery::Earliest,
    }
}

fn decode_record(kind: RecordKind, value: &[u8]) -> Result<DbRecord, StorageError> {
    match kind {
        RecordKind::Azks => decode_azks(value).map(DbRecord::Azks),
        RecordKind::TreeNode => decode_node(value).map(DbRecord::TreeNode),
    }
    .map_err(|e| other(e.0))
}

/// Where records of a storable type live.
enum Place {
    Records(RecordKind),
    States,
}

fn place_of<St: Storable>() -> Place {
    match St::data_type() {
        StorageType::Azks => Place::Records(RecordKind::Azks),
        StorageType::TreeNode => Place::Records(RecordKind::TreeNode),
        StorageType::ValueState => Place::States,
    }
}

fn state_key<St: Storable>(id: &St::StorageKey) -> Result<(Vec<u8>, u64), StorageError> {
    let bin = St::get_full_binary_key_id(id);
    let ValueStateKey(user, epoch) = ValueState::key_from_full_binary(&bin).map_err(other)?;
    Ok((user, epoch))
}

impl<S: DirectoryStorage + ?Sized> AkdDatabase<S> {
    fn fetch<St: Storable>(&self, ids: &[St::StorageKey]) -> Result<Vec<DbRecord>, StorageError> {
        match place_of::<St>() {
            Place::Records(kind) => {
                let keys: Vec<Vec<u8>> = ids.iter().map(St::get_full_binary_key_id).collect();
                let found = self.storage.get_records(kind, &keys).map_err(other)?;
                found.iter().map(|(_, v)| decode_record(kind, v)).collect()
            }
            Place::States => {
                let keys = ids
                    .iter()
                    .map(state_key::<St>)
                    .collect::<Result<Vec<_>, _>>()?;
                let found = self.storage.get_states(&keys).map_err(other)?;
                Ok(found
                    .into_iter()
                    .map(|s| DbRecord::ValueState(to_value_state(s)))
                    .collect())
            }
        }
    }
}

#[async_trait::async_trait]
impl<S: DirectoryStorage + ?Sized> Database for AkdDatabase<S> {
    async fn set(&self, record: DbRecord) -> Result<(), StorageError> {
        self.batch_set(vec![record], DbSetState::General).await
    }

    async fn batch_set(
        &self,
        records: Vec<DbRecord>,
        _state: DbSetState,
    ) -> Result<(), StorageError> {
        let mut batch = WriteBatch::default();
        for record in records {
            match record {
                DbRecord::Azks(a) => {
                    let key = a.get_full_binary_id();
                    batch.records.push((RecordKind::Azks, key, encode_azks(&a)));
                }
                DbRecord::TreeNode(n) => {
                    let key = n.get_full_binary_id();
                    batch
                        .records
                        .push((RecordKind::TreeNode, key, encode_node(&n)));
                }
                DbRecord::ValueState(v) => batch.states.push(from_value_state(v)),
            }
        }
        self.storage.write(batch).map_err(other)
    }

    async fn get<St: Storable>(&self, id: &St::StorageKey) -> Result<DbRecord, StorageError> {
        self.fetch::<St>(std::slice::from_ref(id))?
            .into_iter()
            .next()
            .ok_or_else(|| StorageError::NotFound(format!("{:?} {id:?}", St::data_type())))
    }

    async fn batch_get<St: Storable>(
        &self,
        ids: &[St::StorageKey],
    ) -> Result<Vec<DbRecord>, StorageError> {
        self.fetch::<St>(ids)
    }

    async fn get_user_data(&self, username: &AkdLabel) -> Result<KeyData, StorageError> {
        let states = self.storage.user_states(&username.0).map_err(other)?;
        if states.is_empty() {
            return Err(StorageError::NotFound(format!("ValueState {username:?}")));
        }
        Ok(KeyData {
            states: states.into_iter().map(to_value_state).collect(),
        })
    }

    async fn get_user_state(
        &self,
        username: &AkdLabel,
        flag: ValueStateRetrievalFlag,
    ) -> Result<ValueState, StorageError> {
        self.storage
            .user_state(&username.0, query_of(flag))
            .map_err(other)?
            .map(to_value_state)
            .ok_or_else(|| StorageError::NotFound(format!("ValueState {username:?}")))
    }

    async fn get_user_state_versions(
        &self,
        usernames: &[AkdLabel],
        flag: ValueStateRetrievalFlag,
    ) -> Result<HashMap<AkdLabel, (u64, AkdValue)>, StorageError> {
        let names: Vec<Vec<u8>> = usernames.iter().map(|u| u.0.clone()).collect();
        let found = self
            .storage
            .user_states_at(&names, query_of(flag))
            .map_err(other)?;
        Ok(found
            .into_iter()
            .map(|s| (AkdLabel(s.username), (s.version, AkdValue(s.value))))
            .collect())
    }
}
