//! The accreditation authority (issue 11): which key the administrator set.

use super::blocking;
use crate::auth::AuthDevice;
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;
use axum::extract::State;
use valise_proto::api::AccreditationAuthority;

/// # GET /v1/accreditation-authority
///
/// The accreditation authority's key the administrator set (issue 11).
/// Devices pin the key of their enrolment and alert their user when this
/// answer differs; they never verify attestations under another key.
pub async fn authority(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
) -> Result<Json<AccreditationAuthority>, ApiError> {
    let accreditation_authority =
        blocking(move || Ok(state.store.accreditation_authority()?)).await?;
    Ok(Json(AccreditationAuthority {
        accreditation_authority,
    }))
}
