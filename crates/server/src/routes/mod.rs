//! The `/v1` API: one module per concept, one router.

mod accreditation;
#[cfg(feature = "adversary")]
mod adversary;
mod audit;
mod auth;
mod blobs;
mod conversations;
mod devices;
mod directory;
mod enroll;
mod inbox;
mod key_packages;
mod letters;
mod security_desk;

use crate::error::ApiError;
use crate::state::AppState;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post, put};
use valise_proto::ErrorCode;
use valise_proto::api::blobs::{ITEM_ROUTE as BLOB, LINKS_ROUTE as BLOB_LINKS, ROUTE as BLOBS};

/// Runs blocking store or MLS work off the async threads.
pub(crate) async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, ApiError> + Send + 'static,
) -> Result<T, ApiError> {
    tokio::task::spawn_blocking(f).await?
}

/// The whole API with its state.
pub fn router(state: AppState) -> Router {
    let router = Router::new()
        .route("/v1/enroll", post(enroll::enroll))
        .route("/v1/auth/challenge", post(auth::challenge))
        .route("/v1/auth/token", post(auth::token))
        .route("/v1/devices/self/key-packages", put(key_packages::upload))
        .route(
            "/v1/users/{user}/key-packages/claim",
            post(key_packages::claim),
        )
        .route("/v1/users/{user}/devices", get(key_packages::devices))
        .route("/v1/devices/{device}/approval", post(devices::approve))
        .route("/v1/devices/{device}/revocation", post(devices::revoke))
        .route("/v1/conversations", post(conversations::create))
        .route(
            "/v1/conversations/{id}/commits",
            post(conversations::commit),
        )
        .route(
            "/v1/conversations/{id}/group-info",
            get(conversations::group_info),
        )
        .route("/v1/letters", post(letters::send))
        .route("/v1/inbox", get(inbox::read))
        .route("/v1/directory/root", get(directory::root))
        .route("/v1/directory/lookup/{user}", get(directory::lookup))
        .route("/v1/directory/history/{user}", get(directory::history))
        .route("/v1/directory/audit", get(directory::audit))
        .route("/v1/audit/key", get(audit::key))
        .route("/v1/audit/checkpoint", get(audit::checkpoint))
        .route("/v1/audit/consistency", get(audit::consistency))
        .route("/v1/audit/inclusion", get(audit::inclusion))
        .route("/v1/audit/leaves", get(audit::leaves))
        .route("/v1/audit/account", get(audit::account))
        .route("/v1/security-desk", get(security_desk::read))
        .route("/v1/accreditation-authority", get(accreditation::authority))
        .route("/v1/audit/reports", post(audit::report))
        .route(BLOBS, post(blobs::create))
        .route(BLOB_LINKS, post(blobs::link))
        .route(
            BLOB,
            // A part (PATCH, or POST with one) is read as it arrives, and
            // held to MAX_PART_BYTES there (crate::blobs::receive_part).
            get(blobs::read).head(blobs::status).patch(blobs::append),
        );
    #[cfg(feature = "adversary")]
    let router = adversary::routes(router);
    router
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            crate::metrics::time_request,
        ))
        // Enforced while reading the body, before any parsing.
        .layer(DefaultBodyLimit::max(
            valise_proto::limits::MAX_REQUEST_BYTES,
        ))
        .with_state(state)
}

/// Any unknown route.
async fn not_found() -> ApiError {
    ApiError::new(ErrorCode::NotFound, "no such endpoint")
}

/// A known route with the wrong method.
async fn method_not_allowed() -> ApiError {
    ApiError::bad_request("method not allowed on this endpoint")
}
