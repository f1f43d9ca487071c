//! Attachment blobs, tus-style: create with a declared length, append
//! fsynced parts at the durable offset, ask where to resume, read ranges.
//! Any authenticated device may read a blob whose id it knows (the id is
//! a 128-bit random capability, given only inside encrypted letters);
//! only its owner's devices may write it, and link it to a letter about to
//! go, which keeps it past the window of unlinked blobs.

use super::blocking;
use crate::audit::Event;
use crate::auth::AuthDevice;
use crate::client_addr::ClientAddr;
use crate::error::ApiError;
use crate::json::{Json, Path};
use crate::state::AppState;
use crate::store::{BlobRecord, StoreError};
use axum::body::Body;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use tokio::io::AsyncReadExt;
use tokio_util::io::ReaderStream;
use valise_proto::api::blobs::{
    BlobCreated, BlobsLinked, HeaderError, LinkBlobs, MAX_PART_BYTES, PART_TYPE, UPLOAD_LENGTH,
    UPLOAD_OFFSET, parse_count, parse_range,
};
use valise_proto::audit::Action;
use valise_proto::blob::{MAX_ATTACHMENTS, MIN_BLOB_BYTES};
use valise_proto::{BlobId, DeviceAddress, ErrorCode, UserId};

fn count(headers: &HeaderMap, name: &'static str) -> Result<u64, ApiError> {
    let value = headers
        .get(name)
        .ok_or_else(|| ApiError::bad_request(format!("header {name} is missing")))?;
    parse_count(name, value.as_bytes()).map_err(bad_header)
}

fn bad_header(e: HeaderError) -> ApiError {
    ApiError::bad_request(e.to_string())
}

fn offset_headers(b: &BlobRecord) -> [(&'static str, HeaderValue); 3] {
    [
        (UPLOAD_OFFSET, HeaderValue::from(b.durable)),
        (UPLOAD_LENGTH, HeaderValue::from(b.length)),
        ("cache-control", HeaderValue::from_static("no-store")),
    ]
}

/// The blob, or `not_found` (also for a blob the caller may not see).
fn find(state: &AppState, id: &BlobId) -> Result<BlobRecord, ApiError> {
    state
        .store
        .blob(id)?
        .ok_or_else(|| ApiError::new(ErrorCode::NotFound, "no such blob"))
}

/// # POST /v1/blobs
///
/// Creates an empty blob of the declared `Upload-Length`: 413 over the
/// server's limit and `storage_full` over the account's blob quota, both
/// before a byte is stored. Shorter than [`MIN_BLOB_BYTES`] is no blob a
/// client makes: refused, so that every record costs its owner quota.
///
/// With a body of [`PART_TYPE`] (tus "creation-with-upload"), that body
/// is the blob's first part, stored as a `PATCH` at offset 0 would store
/// it, and the answer carries `Upload-Offset`: a small attachment takes
/// one round trip. If the part fails, the blob stays, empty, as a `POST`
/// without a body leaves it.
pub async fn create(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    AuthDevice(caller): AuthDevice,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    let length = count(&headers, UPLOAD_LENGTH)?;
    if length < MIN_BLOB_BYTES {
        return Err(ApiError::bad_request(format!(
            "a blob has at least {MIN_BLOB_BYTES} bytes; this one declares {length}"
        )));
    }
    if length > state.blobs.max_bytes {
        return Err(ApiError::new(
            ErrorCode::PayloadTooLarge,
            format!(
                "a blob may have at most {} bytes; this one declares {length}",
                state.blobs.max_bytes
            ),
        ));
    }
    let record = BlobRecord {
        id: BlobId::from_bytes(rand::random()),
        owner: caller.user.clone(),
        length,
        durable: 0,
        parts: 0,
        created_at_ms: crate::now_ms(),
    };
    let id = record.id;
    let s = state.clone();
    blocking(move || {
        s.store.create_blob(&record, s.blobs.quota)?;
        s.blobs.create(&record.id)
    })
    .await?;
    state.evidence.emit(
        Event::by(&caller, Action::BlobCreated)
            .count("length", length)
            .from(client),
    );
    let created = Json(BlobCreated { blob: id });
    if !is_part(&headers) {
        return Ok((StatusCode::CREATED, created).into_response());
    }
    let after = store_part(&state, &caller.user, id, 0, body).await?;
    completed(&state, &caller, &after, client);
    Ok((StatusCode::CREATED, offset_headers(&after), created).into_response())
}

/// A blob part, read as it arrives ([`crate::blobs::receive_part`]): the
/// request must say it is one.
pub struct Part(Body);

impl<S: Send + Sync> FromRequest<S> for Part {
    type Rejection = ApiError;

    async fn from_request(req: Request, _state: &S) -> Result<Self, ApiError> {
        if is_part(req.headers()) {
            Ok(Part(req.into_body()))
        } else {
            Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("a blob part must be {PART_TYPE}"),
            ))
        }
    }
}

fn is_part(headers: &HeaderMap) -> bool {
    headers.get(header::CONTENT_TYPE).map(HeaderValue::as_bytes) == Some(PART_TYPE.as_bytes())
}

/// # PATCH /v1/blobs/{id}
///
/// Appends a part at `Upload-Offset`, which must be the blob's durable
/// offset (409 `upload_offset` otherwise, before any byte is read);
/// answers once the part is fsynced, with the new offset. An empty part
/// is refused: it would move nothing, and on a complete blob it logged its
/// completion again.
pub async fn append(
    State(state): State<AppState>,
    client: Option<ClientAddr>,
    AuthDevice(caller): AuthDevice,
    Path(id): Path<BlobId>,
    headers: HeaderMap,
    Part(body): Part,
) -> Result<Response, ApiError> {
    let at = count(&headers, UPLOAD_OFFSET)?;
    let after = store_part(&state, &caller.user, id, at, body).await?;
    completed(&state, &caller, &after, client);
    Ok((StatusCode::NO_CONTENT, offset_headers(&after)).into_response())
}

/// Receives a part of `id` at `at` by its owner `user`, writes it and
/// moves the blob's durable offset past it once it is fsynced.
async fn store_part(
    state: &AppState,
    user: &UserId,
    id: BlobId,
    at: u64,
    body: Body,
) -> Result<BlobRecord, ApiError> {
    let s = state.clone();
    let user = user.clone();
    // Held from before the record is read until the part is recorded: a
    // part that read the offset before another part moved it would cut
    // that acknowledged part off the file.
    let (writing, blob, file) = blocking(move || {
        let writing = s.blobs.writing(&id)?;
        let blob = find(&s, &id).and_then(|b| {
            if b.owner == user {
                Ok(b)
            } else {
                Err(ApiError::new(ErrorCode::NotFound, "no such blob"))
            }
        })?;
        if at != blob.durable {
            return Err(wrong_offset(blob.durable, at));
        }
        let file = s.blobs.open_part(&writing, at)?;
        Ok((writing, blob, file))
    })
    .await?;
    let left = blob.length - at;
    let room = left.min(MAX_PART_BYTES as u64);
    let writing = std::sync::Arc::new(writing);
    let len = crate::blobs::receive_part(&writing, file, body, room, || {
        if room < left {
            ApiError::new(
                ErrorCode::PayloadTooLarge,
                format!("a blob part has at most {MAX_PART_BYTES} bytes"),
            )
        } else {
            ApiError::bad_request(format!(
                "the part ends past the blob's declared length {}",
                blob.length
            ))
        }
    })
    .await?;
    if len == 0 {
        return Err(ApiError::bad_request("a blob part has at least one byte"));
    }
    let to = at + len;
    let s = state.clone();
    blocking(move || {
        let _writing = writing;
        match s.store.blob_part(&id, at, to) {
            // Expired meanwhile: not found.
            Err(StoreError::Changed(_)) => Err(wrong_offset(find(&s, &id)?.durable, at)),
            other => Ok(other?),
        }
    })
    .await?;
    Ok(BlobRecord {
        durable: to,
        ..blob
    })
}

fn wrong_offset(durable: u64, at: u64) -> ApiError {
    ApiError::new(
        ErrorCode::UploadOffset,
        format!("the blob's durable offset is {durable}, not {at}"),
    )
}

/// The audit event of a blob whose last part just came.
fn completed(
    state: &AppState,
    caller: &DeviceAddress,
    after: &BlobRecord,
    client: Option<ClientAddr>,
) {
    if after.is_complete() {
        state.evidence.emit(
            Event::by(caller, Action::BlobCompleted)
                .count("length", after.length)
                .from(client),
        );
    }
}

/// # HEAD /v1/blobs/{id}
///
/// How much of the blob is durable (`Upload-Offset`) of its declared
/// `Upload-Length`: where an interrupted upload resumes.
pub async fn status(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
    Path(id): Path<BlobId>,
) -> Result<Response, ApiError> {
    let blob = blocking(move || find(&state, &id)).await?;
    Ok((StatusCode::OK, offset_headers(&blob)).into_response())
}

/// # GET /v1/blobs/{id}
///
/// One `Range: bytes=FIRST-LAST` of a complete blob, at most
/// [`MAX_PART_BYTES`], as 206 with `Content-Range`. The file streams out
/// [`READ_BYTES`] at a time as HTTP/2 flow control lets it go: a range is
/// never whole in memory, however many a client has in flight.
pub async fn read(
    State(state): State<AppState>,
    AuthDevice(_caller): AuthDevice,
    Path(id): Path<BlobId>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let range = headers
        .get(header::RANGE)
        .ok_or_else(|| ApiError::bad_request("header range is missing"))?;
    let (start, len) = parse_range(range.as_bytes()).map_err(bad_header)?;
    if len > MAX_PART_BYTES as u64 {
        return Err(ApiError::bad_request(format!(
            "a range may have at most {MAX_PART_BYTES} bytes"
        )));
    }
    let (blob, file, held) = blocking(move || {
        let blob = find(&state, &id)?;
        if !blob.is_complete() {
            return Err(ApiError::new(
                ErrorCode::NotFound,
                "the blob is not complete",
            ));
        }
        if start.saturating_add(len) > blob.length {
            return Err(ApiError::bad_request(format!(
                "the range ends past the blob's {} bytes",
                blob.length
            )));
        }
        let (file, held) = state.blobs.open_range(&id, start, len)?;
        Ok((blob, file, held))
    })
    .await?;
    let content_range = format!("bytes {start}-{}/{}", start + len - 1, blob.length);
    let file = tokio::fs::File::from_std(file).take(held);
    Ok((
        StatusCode::PARTIAL_CONTENT,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (
                header::CONTENT_RANGE,
                HeaderValue::from_str(&content_range).map_err(ApiError::internal)?,
            ),
            (header::CONTENT_LENGTH, HeaderValue::from(held)),
        ],
        Body::from_stream(ReaderStream::with_capacity(file, READ_BYTES)),
    )
        .into_response())
}

/// # POST /v1/blobs/links
///
/// Links the caller's complete blobs named in the body, at most
/// [`MAX_ATTACHMENTS`] (one letter's), to a letter about to go: they stay
/// from then on, where a blob no letter named within the window is swept.
/// Answers the named blobs it did not link (gone, another user's, not
/// complete), which the client uploads again under a new key.
pub async fn link(
    State(state): State<AppState>,
    AuthDevice(caller): AuthDevice,
    Json(req): Json<LinkBlobs>,
) -> Result<Json<BlobsLinked>, ApiError> {
    if req.blobs.len() > MAX_ATTACHMENTS {
        return Err(ApiError::bad_request(format!(
            "a letter carries at most {MAX_ATTACHMENTS} blobs"
        )));
    }
    let missing = blocking(move || Ok(state.store.link_blobs(&caller.user, &req.blobs)?)).await?;
    Ok(Json(BlobsLinked { missing }))
}

/// Bytes of a range read from the file at once.
const READ_BYTES: usize = 256 << 10;
