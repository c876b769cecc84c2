//! Extractors whose rejections are [`ApiError`]s, so a malformed query string, path parameter
//! or JSON body answers with the same `{"error":{"kind","field?","message"}}` body (and the
//! field named) as every other failure, instead of axum's plain-text rejections.

use axum::{
    extract::{FromRequest, FromRequestParts, Request, rejection::JsonRejection},
    http::request::Parts,
    response::{IntoResponse, Response},
};
use serde::{Serialize, de::DeserializeOwned};

use super::{ApiError, ErrorKind, error::serde_field};

/// `axum::extract::Query`, failing with `invalid_query` naming the parameter.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(q) => Ok(Query(q.0)),
            Err(e) => {
                let message = e.body_text();
                let field = serde_field(&message).unwrap_or_else(|| "query".into());
                Err(ApiError::new(ErrorKind::InvalidQuery, message).field(field))
            }
        }
    }
}

/// `axum::extract::Path`, failing with `invalid_path`.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(p) => Ok(Path(p.0)),
            Err(e) => Err(ApiError::new(ErrorKind::InvalidPath, e.body_text()).field("path")),
        }
    }
}

/// `axum::Json`: as an extractor it fails with `invalid_body` naming the field (or
/// `content_type` without a JSON content type, `body_too_large` past the body limit); as a
/// response it is axum's.
pub struct Json<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Json<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        match axum::Json::<T>::from_request(req, state).await {
            Ok(j) => Ok(Json(j.0)),
            Err(e) => Err(json_rejection(e)),
        }
    }
}

impl<T: Serialize> IntoResponse for Json<T> {
    fn into_response(self) -> Response {
        axum::Json(self.0).into_response()
    }
}

pub(super) fn json_rejection(e: JsonRejection) -> ApiError {
    let message = e.body_text();
    match e {
        JsonRejection::MissingJsonContentType(_) => {
            ApiError::new(ErrorKind::ContentType, message).field("content-type")
        }
        JsonRejection::BytesRejection(_) if e.status().as_u16() == 413 => {
            ApiError::new(ErrorKind::BodyTooLarge, message).field("body")
        }
        JsonRejection::BytesRejection(_) => {
            ApiError::new(ErrorKind::BodyUnreadable, message).field("body")
        }
        _ => {
            let field = serde_field(&message).unwrap_or_else(|| "body".into());
            ApiError::new(ErrorKind::InvalidBody, message).field(field)
        }
    }
}
