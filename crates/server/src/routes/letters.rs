//! # POST /v1/letters
//!
//! A batch of letters (application messages), several conversations
//! allowed, in the binary body of [`valise_proto::wire`]. Each is stored
//! once for every member device, idempotent on its client message id, and
//! answered with its own outcome. A letter not accepted skips the later
//! ones of its conversation, so a sender's letters are never taken out of
//! order. The whole batch goes to the writer at once: one fsync.

use crate::error::ApiError;
use crate::json::Binary;
use crate::limits::SendPermit;
use crate::state::AppState;
use crate::store::{LetterOutcome, LogWrite, LogWritten, NewMessage, StoreError};
use axum::extract::State;
use std::collections::HashSet;
use valise_mls::application_epoch;
use valise_proto::ErrorCode;
use valise_proto::limits::MAX_MLS_MESSAGE_BYTES;
use valise_proto::wire::{self, Outcome};

pub async fn send(
    State(state): State<AppState>,
    permit: SendPermit,
    Binary(body): Binary,
) -> Result<Binary, ApiError> {
    let letters = wire::decode_letters(&body, permit.letters)
        .map_err(|e| ApiError::bad_request(e.to_string()))?;
    let now_ms = crate::now_ms();
    // Letters refused before the store (malformed, too large) skip the
    // rest of their conversation like refusals of the store do.
    let mut outcomes: Vec<Option<Outcome>> = Vec::with_capacity(letters.len());
    let mut refused = HashSet::new();
    let mut stored = Vec::with_capacity(letters.len());
    let mut bytes = 0;
    for letter in letters {
        if refused.contains(&letter.conversation) {
            outcomes.push(Some(Outcome::Skipped));
            continue;
        }
        let epoch = if letter.message.len() > MAX_MLS_MESSAGE_BYTES {
            Err(ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a letter is larger than {MAX_MLS_MESSAGE_BYTES} bytes"),
            ))
        } else {
            application_epoch(&letter.conversation, &letter.message).map_err(ApiError::from)
        };
        match epoch {
            Ok(epoch) => {
                bytes += letter.message.len();
                outcomes.push(None);
                stored.push(NewMessage {
                    conversation: letter.conversation,
                    sender: permit.device.clone(),
                    client_msg_id: letter.client_msg_id,
                    epoch,
                    bytes: letter.message,
                    now_ms,
                });
            }
            Err(e) => {
                refused.insert(letter.conversation);
                outcomes.push(Some(refusal(e)));
            }
        }
    }
    let mut from_store = if stored.is_empty() {
        Vec::new()
    } else {
        match state
            .delivery
            .write(LogWrite::Letters(stored), bytes)
            .await?
        {
            LogWritten::Letters(o) => o,
            _ => return Err(ApiError::internal("the writer answered another write")),
        }
    }
    .into_iter();
    let outcomes: Vec<Outcome> = outcomes
        .into_iter()
        .map(|o| o.unwrap_or_else(|| from_store.next().map_or(Outcome::Skipped, outcome)))
        .collect();
    state.metrics.letters(&outcomes);
    Ok(Binary(wire::encode_outcomes(&outcomes)))
}

fn outcome(o: LetterOutcome) -> Outcome {
    match o {
        LetterOutcome::Accepted { seq, recipients } => Outcome::Accepted { recipients, seq },
        LetterOutcome::Duplicate { recipients, epoch } => Outcome::Duplicate { recipients, epoch },
        LetterOutcome::Skipped => Outcome::Skipped,
        LetterOutcome::Refused(StoreError::StaleEpoch { current }) => {
            Outcome::StaleEpoch { current }
        }
        LetterOutcome::Refused(e) => refusal(e.into()),
    }
}

fn refusal(e: ApiError) -> Outcome {
    match e.current_epoch {
        Some(current) if e.code == ErrorCode::StaleEpoch => Outcome::StaleEpoch { current },
        _ => Outcome::Refused {
            code: e.code,
            message: e.detail,
        },
    }
}
