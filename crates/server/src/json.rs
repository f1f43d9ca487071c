//! Extractors whose rejections are problems too, so that a client always
//! gets a parsable `application/problem+json` (I8): JSON bodies, the
//! binary bodies of delivery, paths and queries.

use crate::error::ApiError;
use axum::extract::rejection::{BytesRejection, JsonRejection, PathRejection, QueryRejection};
use axum::extract::{FromRequest, FromRequestParts, Request};
use axum::http::request::Parts;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde::de::DeserializeOwned;
use valise_proto::ErrorCode;
use valise_proto::wire::CONTENT_TYPE;

/// A JSON body in, a JSON body out.
#[derive(Debug, Clone, Copy, Default)]
pub struct Json<T>(pub T);

pub(crate) fn from_rejection(status: StatusCode, text: String) -> ApiError {
    match status {
        StatusCode::PAYLOAD_TOO_LARGE => ApiError::new(ErrorCode::PayloadTooLarge, text),
        StatusCode::UNSUPPORTED_MEDIA_TYPE => ApiError::new(ErrorCode::UnsupportedMediaType, text),
        _ => ApiError::bad_request(text),
    }
}

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(axum::Json(v)) => Ok(Json(v)),
            Err(r) => Err(json_rejection(r)),
        }
    }
}

fn json_rejection(r: JsonRejection) -> ApiError {
    // A body over the limit surfaces as a failed read with status 413.
    from_rejection(r.status(), r.body_text())
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

/// A binary delivery body ([`valise_proto::wire`]) in or out: the request
/// must say it is one.
#[derive(Debug, Clone, Default)]
pub struct Binary(pub Vec<u8>);

impl<S: Send + Sync> FromRequest<S> for Binary {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let media = req.headers().get(header::CONTENT_TYPE);
        if media.map(HeaderValue::as_bytes) != Some(CONTENT_TYPE.as_bytes()) {
            return Err(ApiError::new(
                ErrorCode::UnsupportedMediaType,
                format!("the body must be {CONTENT_TYPE}"),
            ));
        }
        axum::body::Bytes::from_request(req, state)
            .await
            .map(|b| Binary(b.to_vec()))
            .map_err(|r: BytesRejection| from_rejection(r.status(), r.body_text()))
    }
}

impl IntoResponse for Binary {
    fn into_response(self) -> Response {
        let mut resp = self.0.into_response();
        resp.headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static(CONTENT_TYPE));
        resp
    }
}

/// Path parameters; a bad one is a `bad_request` problem.
#[derive(Debug)]
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Path::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Path(v)| Path(v))
            .map_err(|r: PathRejection| ApiError::bad_request(r.body_text()))
    }
}

/// Query parameters; a bad one is a `bad_request` problem.
#[derive(Debug)]
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        axum::extract::Query::<T>::from_request_parts(parts, state)
            .await
            .map(|axum::extract::Query(v)| Query(v))
            .map_err(|r: QueryRejection| ApiError::bad_request(r.body_text()))
    }
}
