use super::blocking;
use crate::auth::AuthDevice;
use crate::error::ApiError;
use crate::hub::{HubGroup, Leaf, MlsRefusal, application_epoch, check_welcome};
use crate::json::{Json, Path};
use crate::limits::{CommitPermit, SendPermit};
use crate::state::AppState;
use crate::store::{
    AppliedCommit, ConversationRecord, NewConversation, NewMessage, Store, WelcomeDelivery,
};
use axum::extract::State;
use valise_proto::api::{
    ConversationState, CreateConversation, GroupInfoState, MessageAccepted, SendMessage,
    SubmitCommit,
};
use valise_proto::limits::MAX_MLS_MESSAGE_BYTES;
use valise_proto::{ConversationId, DeviceAddress, ErrorCode};

fn check_size(what: &str, len: usize) -> Result<(), ApiError> {
    if len > MAX_MLS_MESSAGE_BYTES {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!("{what} is larger than {MAX_MLS_MESSAGE_BYTES} bytes"),
        ));
    }
    Ok(())
}

/// Every leaf must be a device this server enrolled, with the key it
/// enrolled (I5: no silent members).
fn check_leaves(store: &dyn Store, leaves: &[Leaf]) -> Result<Vec<DeviceAddress>, ApiError> {
    let mut roster = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        match store.device_key(&leaf.device)? {
            Some(key) if key == leaf.signature_key => roster.push(leaf.device.clone()),
            _ => {
                return Err(MlsRefusal(format!(
                    "leaf {} is not an enrolled device with that key",
                    leaf.device
                ))
                .into());
            }
        }
    }
    roster.sort();
    roster.dedup();
    if roster.len() != leaves.len() {
        return Err(MlsRefusal("a device appears in two leaves".into()).into());
    }
    Ok(roster)
}

/// # POST /v1/conversations
///
/// Registers a conversation at epoch 0 on this hub. The creator must be its
/// only member, so nobody is put in a conversation without a commit.
pub async fn create(
    State(state): State<AppState>,
    CommitPermit(caller): CommitPermit,
    Json(req): Json<CreateConversation>,
) -> Result<Json<ConversationState>, ApiError> {
    check_size("group_info", req.group_info.as_slice().len())?;
    check_size("ratchet_tree", req.ratchet_tree.as_slice().len())?;
    let id = req.id;
    let members = blocking(move || {
        let group = HubGroup::create(
            &state.crypto,
            &state.policy,
            &id,
            req.group_info.as_slice(),
            req.ratchet_tree.as_slice(),
        )?;
        let leaves = group.leaves()?;
        if leaves.len() != 1 || leaves.first().map(|l| &l.device) != Some(&caller) {
            return Err(MlsRefusal("the creator must be the only member at epoch 0".into()).into());
        }
        let roster = check_leaves(state.store.as_ref(), &leaves)?;
        state.store.create_conversation(&NewConversation {
            record: ConversationRecord {
                id,
                epoch: group.epoch(),
                ciphersuite: group.ciphersuite(),
                state: group.state()?,
                roster: roster.clone(),
                group_info: req.group_info.into_vec(),
            },
            created_by: caller.clone(),
            now_ms: crate::now_ms(),
        })?;
        tracing::info!(conversation = %id, creator = %caller, "conversation created");
        Ok(roster)
    })
    .await?;
    Ok(Json(ConversationState {
        id,
        epoch: 0,
        members,
    }))
}

/// # POST /v1/conversations/{id}/commits
///
/// Orders the group's handshake: a member's commit for the current epoch is
/// checked against the public state, merged, and fanned out to the old
/// roster (so removed members learn of it) with the Welcome for joiners.
/// The epoch is compared-and-set in the write, so two racing commits cannot
/// both win.
pub async fn commit(
    State(state): State<AppState>,
    CommitPermit(caller): CommitPermit,
    Path(id): Path<ConversationId>,
    Json(req): Json<SubmitCommit>,
) -> Result<Json<ConversationState>, ApiError> {
    check_size("commit", req.commit.as_slice().len())?;
    if let Some(w) = &req.welcome {
        check_size("welcome", w.as_slice().len())?;
    }
    if let Some(g) = &req.group_info {
        check_size("group_info", g.as_slice().len())?;
    }
    let wakeups = state.wakeups.clone();
    let (answer, touched) = blocking(move || {
        let store = state.store.as_ref();
        let conv = store
            .load_conversation(&id)?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conversation"))?;
        if !conv.roster.contains(&caller) {
            return Err(crate::store::StoreError::NotMember.into());
        }
        if req.epoch != conv.epoch {
            #[cfg(feature = "adversary")]
            if let Some(forked) = crate::adversary::accept_stale(
                &state,
                &conv,
                &caller,
                req.epoch,
                req.commit.as_slice(),
            )? {
                return Ok(forked);
            }
            return Err(ApiError::stale_epoch(conv.epoch));
        }
        let caller_key = store
            .device_key(&caller)?
            .ok_or_else(ApiError::unauthorized)?;
        let group_info = req
            .group_info
            .ok_or_else(|| MlsRefusal("a commit must carry the new epoch's group info".into()))?;
        let mut group = HubGroup::load(&id, &conv.state)
            .map_err(|e| ApiError::internal(format!("conversation {id}: {e}")))?;
        group.apply_commit(&state.crypto, req.commit.as_slice(), &caller, &caller_key)?;
        group.check_group_info(&state.crypto, group_info.as_slice(), &caller_key)?;
        let roster = check_leaves(store, &group.leaves()?)?;
        let joiners: Vec<DeviceAddress> = roster
            .iter()
            .filter(|d| !conv.roster.contains(d))
            .cloned()
            .collect();
        let welcome = match (joiners.is_empty(), req.welcome) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(MlsRefusal("a welcome without joiners".into()).into());
            }
            (false, None) => {
                return Err(
                    MlsRefusal("the commit adds devices but carries no welcome".into()).into(),
                );
            }
            (false, Some(w)) => {
                check_welcome(w.as_slice())?;
                Some(WelcomeDelivery {
                    message: w.into_vec(),
                    ratchet_tree: group.ratchet_tree()?,
                    joiners: joiners.clone(),
                })
            }
        };
        let new_epoch = group.epoch();
        let touched = store.apply_commit(&AppliedCommit {
            conversation: id,
            expected_epoch: conv.epoch,
            new_epoch,
            new_state: group.state()?,
            new_roster: roster.clone(),
            new_group_info: group_info.into_vec(),
            sender: caller.clone(),
            commit: req.commit.into_vec(),
            welcome,
            now_ms: crate::now_ms(),
        })?;
        tracing::info!(
            conversation = %id, committer = %caller, epoch = new_epoch,
            members = roster.len(), joiners = joiners.len(), "commit accepted"
        );
        #[cfg(feature = "adversary")]
        crate::adversary::after_commit(&state, &id)?;
        Ok((
            ConversationState {
                id,
                epoch: new_epoch,
                members: roster,
            },
            touched,
        ))
    })
    .await?;
    wakeups.poke(touched.iter());
    Ok(Json(answer))
}

/// # GET /v1/conversations/{id}/group-info
///
/// The latest GroupInfo and tree, for a member device to rejoin from by
/// external commit after it lost track of the group (a fork, or a commit
/// it could not process). Members only.
pub async fn group_info(
    State(state): State<AppState>,
    AuthDevice(caller): AuthDevice,
    Path(id): Path<ConversationId>,
) -> Result<Json<GroupInfoState>, ApiError> {
    let answer = blocking(move || {
        let conv = state
            .store
            .load_conversation(&id)?
            .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such conversation"))?;
        if !conv.roster.contains(&caller) {
            return Err(crate::store::StoreError::NotMember.into());
        }
        let group = HubGroup::load(&id, &conv.state)
            .map_err(|e| ApiError::internal(format!("conversation {id}: {e}")))?;
        Ok(GroupInfoState {
            epoch: conv.epoch,
            group_info: conv.group_info.into(),
            ratchet_tree: group.ratchet_tree()?.into(),
        })
    })
    .await?;
    Ok(Json(answer))
}

/// # POST /v1/conversations/{id}/messages
///
/// Stores an application message once and queues it for every other member
/// device. Idempotent on the client's message id, so a retry after a lost
/// answer never duplicates. Goes through the batch writer (hot path).
pub async fn send(
    State(state): State<AppState>,
    SendPermit(caller): SendPermit,
    Path(id): Path<ConversationId>,
    Json(req): Json<SendMessage>,
) -> Result<Json<MessageAccepted>, ApiError> {
    check_size("message", req.message.as_slice().len())?;
    let epoch = application_epoch(&id, req.message.as_slice())?;
    let outcome = state
        .delivery
        .send(NewMessage {
            conversation: id,
            sender: caller,
            client_msg_id: req.client_msg_id,
            epoch,
            bytes: req.message.into_vec(),
            now_ms: crate::now_ms(),
        })
        .await?;
    Ok(Json(MessageAccepted {
        duplicate: outcome.duplicate,
        recipients: outcome.recipients.len() as u64,
    }))
}
