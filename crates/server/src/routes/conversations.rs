use super::blocking;
use crate::audit::Event;
use crate::auth::AuthDevice;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::{Json, Path};
use crate::limits::CommitPermit;
use crate::state::AppState;
use crate::store::{
    AppliedCommit, ConversationRecord, LogWrite, LogWritten, NewConversation, Status, Store,
    WelcomeDelivery,
};
use axum::extract::State;
use valise_mls::{Leaf, PublicState, Refusal, check_welcome};
use valise_proto::api::{ConversationState, CreateConversation, GroupInfoState, SubmitCommit};
use valise_proto::audit::Action;
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
/// enrolled (I5: no silent members), and every new leaf (a joiner, or a
/// leaf whose key changed: not in `before`) an approved device: nobody
/// enters a conversation unless their own user approved them. Leaves the
/// group had before stay even if their device was revoked since, so that
/// the commit that removes them goes through.
fn check_leaves(
    store: &dyn Store,
    leaves: &[Leaf],
    before: &[Leaf],
) -> Result<Vec<DeviceAddress>, ApiError> {
    let mut roster = Vec::with_capacity(leaves.len());
    for leaf in leaves {
        let Some(device) = store
            .device(&leaf.device)?
            .filter(|d| d.signature_key == leaf.signature_key)
        else {
            return Err(Refusal(format!(
                "leaf {} is not an enrolled device with that key",
                leaf.device
            ))
            .into());
        };
        if device.status != Status::Approved && !before.contains(leaf) {
            return Err(ApiError::new(
                ErrorCode::Forbidden,
                format!(
                    "leaf {} is a device its user has not approved ({})",
                    leaf.device,
                    device.status.as_str()
                ),
            ));
        }
        roster.push(leaf.device.clone());
    }
    roster.sort();
    roster.dedup();
    if roster.len() != leaves.len() {
        return Err(Refusal::new("a device appears in two leaves").into());
    }
    Ok(roster)
}

/// # POST /v1/conversations
///
/// Registers a conversation at epoch 0 on this hub. The creator must be its
/// only member, so nobody is put in a conversation without a commit, and
/// approved (`device_pending` otherwise), like every committer and sender.
pub async fn create(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    CommitPermit(caller): CommitPermit,
    Json(req): Json<CreateConversation>,
) -> Result<Json<ConversationState>, ApiError> {
    let event = Event::by(&caller, Action::ConversationCreated)
        .on_conversation(&req.id)
        .from(client);
    let outcome = create_checked(&state, caller, req).await;
    state.evidence.emit(match &outcome {
        Ok(_) => event.text("outcome", "done"),
        Err(e) => event.text("outcome", "refused").refused(e),
    });
    outcome
}

async fn create_checked(
    state: &AppState,
    caller: DeviceAddress,
    req: CreateConversation,
) -> Result<Json<ConversationState>, ApiError> {
    check_size("group_info", req.group_info.as_slice().len())?;
    check_size("ratchet_tree", req.ratchet_tree.as_slice().len())?;
    let id = req.id;
    let st = state.clone();
    let (members, new) = blocking(move || {
        let state = st;
        let group = PublicState::create(
            state.crypto.as_ref(),
            &state.policy,
            &id,
            req.group_info.as_slice(),
            req.ratchet_tree.as_slice(),
        )?;
        let leaves = group.leaves()?;
        if leaves.len() != 1 || leaves.first().map(|l| &l.device) != Some(&caller) {
            return Err(Refusal::new("the creator must be the only member at epoch 0").into());
        }
        let roster = check_leaves(state.store.as_ref(), &leaves, &[])?;
        let new = NewConversation {
            record: ConversationRecord {
                id,
                epoch: group.epoch(),
                ciphersuite: u16::from(group.ciphersuite()),
                state: group.state()?,
                roster: roster.clone(),
                group_info: req.group_info.into_vec(),
            },
            created_by: caller.clone(),
            now_ms: crate::now_ms(),
        };
        Ok((roster, new))
    })
    .await?;
    let bytes = new.record.state.len() + new.record.group_info.len();
    match state.delivery.write(LogWrite::Create(new), bytes).await? {
        LogWritten::Created(r) => r?,
        _ => return Err(ApiError::internal("the writer answered another write")),
    }
    tracing::info!(conversation = %id, creator = ?members.first(), "conversation created");
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
    client: Option<ClientAddr>,
    CommitPermit(caller): CommitPermit,
    Path(id): Path<ConversationId>,
    Json(req): Json<SubmitCommit>,
) -> Result<Json<ConversationState>, ApiError> {
    let by = caller.clone();
    let epoch = req.epoch;
    let outcome = commit_checked(&state, caller, id, req).await;
    let event = |action| {
        Event::by(&by, action)
            .on_conversation(&id)
            .from(client)
            .count("epoch", epoch)
    };
    state.evidence.emit(match &outcome {
        Ok(Json(s)) => event(Action::CommitAccepted)
            .count("new_epoch", s.epoch)
            .count("members", s.members.len() as u64),
        Err(e) => event(Action::CommitRefused).refused(e),
    });
    outcome
}

async fn commit_checked(
    state: &AppState,
    caller: DeviceAddress,
    id: ConversationId,
    req: SubmitCommit,
) -> Result<Json<ConversationState>, ApiError> {
    check_size("commit", req.commit.as_slice().len())?;
    if let Some(w) = &req.welcome {
        check_size("welcome", w.as_slice().len())?;
    }
    if let Some(g) = &req.group_info {
        check_size("group_info", g.as_slice().len())?;
    }
    let st = state.clone();
    let (answer, applied) = blocking(move || {
        let state = st;
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
                return Ok((forked, None));
            }
            return Err(ApiError::stale_epoch(conv.epoch));
        }
        let caller_key = store
            .device(&caller)?
            .ok_or_else(ApiError::unauthorized)?
            .signature_key;
        let group_info = req
            .group_info
            .ok_or_else(|| Refusal::new("a commit must carry the new epoch's group info"))?;
        let mut group = PublicState::load(&id, &conv.state)
            .map_err(|e| ApiError::internal(format!("conversation {id}: {e}")))?;
        let before = group.leaves()?;
        group.apply_commit(
            state.crypto.as_ref(),
            req.commit.as_slice(),
            Some((&caller, &caller_key)),
        )?;
        group.check_group_info(state.crypto.as_ref(), group_info.as_slice(), &caller_key)?;
        let roster = check_leaves(store, &group.leaves()?, &before)?;
        let joiners: Vec<DeviceAddress> = roster
            .iter()
            .filter(|d| !conv.roster.contains(d))
            .cloned()
            .collect();
        let welcome = match (joiners.is_empty(), req.welcome) {
            (true, None) => None,
            (true, Some(_)) => {
                return Err(Refusal::new("a welcome without joiners").into());
            }
            (false, None) => {
                return Err(Refusal::new("the commit adds devices but carries no welcome").into());
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
        let answer = |members| ConversationState {
            id,
            epoch: new_epoch,
            members,
        };
        let applied = AppliedCommit {
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
        };
        tracing::info!(
            conversation = %id, committer = %caller, epoch = new_epoch,
            members = roster.len(), joiners = joiners.len(), "commit checked"
        );
        #[cfg(feature = "adversary")]
        let Some(applied) = crate::adversary::fork_commit(&state, applied)? else {
            return Ok((answer(roster), None));
        };
        Ok((answer(roster), Some(applied)))
    })
    .await?;
    let Some(applied) = applied else {
        return Ok(Json(answer));
    };
    let bytes = applied.commit.len()
        + applied.new_state.len()
        + applied
            .welcome
            .as_ref()
            .map_or(0, |w| w.message.len() + w.ratchet_tree.len());
    match state
        .delivery
        .write(LogWrite::Commit(applied), bytes)
        .await?
    {
        LogWritten::Committed(r) => r?,
        _ => return Err(ApiError::internal("the writer answered another write")),
    }
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
        let group = PublicState::load(&id, &conv.state)
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
