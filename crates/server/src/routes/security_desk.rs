use super::blocking;
use crate::auth::AuthDevice;
use crate::error::ApiError;
use crate::json::Json;
use crate::state::AppState;
use axum::extract::State;
use valise_proto::api::SecurityDesk;

/// # GET /v1/security-desk
///
/// The security desk the administrator named (issue 10). Devices ask
/// during their periodic housekeeping; each keeps reporting to the desk it
/// pinned and alerts its user when this answer differs, so a server that
/// names another desk is seen, not obeyed.
pub async fn read(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
) -> Result<Json<SecurityDesk>, ApiError> {
    let security_desk = blocking(move || Ok(state.store.security_desk()?)).await?;
    Ok(Json(SecurityDesk { security_desk }))
}
