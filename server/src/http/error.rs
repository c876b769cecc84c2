//! The one API error type: mapped once to a status code and the JSON body
//! `{"error":{"kind","field?","message"}}`.

use axum::{
    http::{HeaderValue, StatusCode, header},
    response::{IntoResponse, Json, Response},
};
use yunwei_proto::{ErrorBody, ErrorDetail};

/// What went wrong, as the API names it. The kind decides the HTTP status, so the same failure
/// always answers the same way.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorKind {
    /// A value is out of range or malformed; `field` names it.
    InvalidValue,
    /// The JSON body does not parse or does not fit the schema.
    InvalidBody,
    /// The query string does not fit the endpoint's parameters.
    InvalidQuery,
    /// A path parameter has the wrong type.
    InvalidPath,
    /// A required parameter is absent.
    Missing,
    /// A rule reload was refused; the message lists every diagnostic.
    InvalidRules,
    /// The password does not meet the policy.
    WeakPassword,
    /// The batch's protocol `version` field is not one the server speaks.
    Version,
    /// A batch does not fit the wire schema.
    Schema,
    /// A batch carries a field the protocol does not define.
    UnknownField,
    /// The gzip body does not decompress.
    Compression,
    /// The request body could not be read.
    BodyUnreadable,
    /// No valid session, API token or agent token.
    Unauthenticated,
    /// Wrong user name or password.
    InvalidCredentials,
    /// The account is locked after failed logins (`Retry-After`).
    Locked,
    /// The caller lacks the permission the route needs.
    Forbidden,
    /// A cookie-authenticated change without the CSRF token.
    Csrf,
    /// A batch names another agent than its token's.
    AgentMismatch,
    /// The server accepts no enrollments.
    EnrollmentDisabled,
    /// No such route or object.
    NotFound,
    /// The route exists, not with this method.
    MethodNotAllowed,
    /// The object already exists.
    Exists,
    /// The object's state does not allow the change.
    Conflict,
    /// The request body exceeds the limit.
    BodyTooLarge,
    /// The decompressed batch exceeds the limit.
    DecompressedTooLarge,
    /// The Content-Type (or its protocol version) is not accepted.
    ContentType,
    /// The Content-Encoding is not accepted.
    ContentEncoding,
    /// The server cannot make this report format (e.g. no CJK font for PDF).
    FormatUnavailable,
    /// Storing the batch would exceed the agent's series limit.
    SeriesLimit,
    /// A selector matches more series than one answer may hold.
    TooManySeries,
    /// Too many requests in flight for this caller (`Retry-After`).
    TooManyRequests,
    /// The request body did not arrive within `http.body_read_timeout_secs`.
    RequestTimeout,
    /// A server-side failure; details are in the server log only.
    Internal,
    /// The ingest queue is full (`Retry-After`).
    Overloaded,
    /// A dependency (the store, the writer) is down (`Retry-After`).
    Unavailable,
}

impl ErrorKind {
    /// Every kind, for the OpenAPI document, the metrics and the tests.
    pub const ALL: [ErrorKind; 35] = [
        ErrorKind::InvalidValue,
        ErrorKind::InvalidBody,
        ErrorKind::InvalidQuery,
        ErrorKind::InvalidPath,
        ErrorKind::Missing,
        ErrorKind::InvalidRules,
        ErrorKind::WeakPassword,
        ErrorKind::Version,
        ErrorKind::Schema,
        ErrorKind::UnknownField,
        ErrorKind::Compression,
        ErrorKind::BodyUnreadable,
        ErrorKind::Unauthenticated,
        ErrorKind::InvalidCredentials,
        ErrorKind::Locked,
        ErrorKind::Forbidden,
        ErrorKind::Csrf,
        ErrorKind::AgentMismatch,
        ErrorKind::EnrollmentDisabled,
        ErrorKind::NotFound,
        ErrorKind::MethodNotAllowed,
        ErrorKind::Exists,
        ErrorKind::Conflict,
        ErrorKind::BodyTooLarge,
        ErrorKind::DecompressedTooLarge,
        ErrorKind::ContentType,
        ErrorKind::ContentEncoding,
        ErrorKind::FormatUnavailable,
        ErrorKind::SeriesLimit,
        ErrorKind::TooManySeries,
        ErrorKind::TooManyRequests,
        ErrorKind::RequestTimeout,
        ErrorKind::Internal,
        ErrorKind::Overloaded,
        ErrorKind::Unavailable,
    ];

    /// The name in the JSON body (`error.kind`).
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorKind::InvalidValue => "invalid_value",
            ErrorKind::InvalidBody => "invalid_body",
            ErrorKind::InvalidQuery => "invalid_query",
            ErrorKind::InvalidPath => "invalid_path",
            ErrorKind::Missing => "missing",
            ErrorKind::InvalidRules => "invalid_rules",
            ErrorKind::WeakPassword => "weak_password",
            ErrorKind::Version => "version",
            ErrorKind::Schema => "schema",
            ErrorKind::UnknownField => "unknown_field",
            ErrorKind::Compression => "compression",
            ErrorKind::BodyUnreadable => "body_unreadable",
            ErrorKind::Unauthenticated => "unauthenticated",
            ErrorKind::InvalidCredentials => "invalid_credentials",
            ErrorKind::Locked => "locked",
            ErrorKind::Forbidden => "forbidden",
            ErrorKind::Csrf => "csrf",
            ErrorKind::AgentMismatch => "agent_mismatch",
            ErrorKind::EnrollmentDisabled => "enrollment_disabled",
            ErrorKind::NotFound => "not_found",
            ErrorKind::MethodNotAllowed => "method_not_allowed",
            ErrorKind::Exists => "exists",
            ErrorKind::Conflict => "conflict",
            ErrorKind::BodyTooLarge => "body_too_large",
            ErrorKind::DecompressedTooLarge => "decompressed_too_large",
            ErrorKind::ContentType => "content_type",
            ErrorKind::ContentEncoding => "content_encoding",
            ErrorKind::FormatUnavailable => "format_unavailable",
            ErrorKind::SeriesLimit => "series_limit",
            ErrorKind::TooManySeries => "too_many_series",
            ErrorKind::TooManyRequests => "too_many_requests",
            ErrorKind::Internal => "internal",
            ErrorKind::Overloaded => "overloaded",
            ErrorKind::Unavailable => "unavailable",
            ErrorKind::RequestTimeout => "request_timeout",
        }
    }

    /// The HTTP status this kind always answers with.
    pub fn status(self) -> StatusCode {
        match self {
            ErrorKind::InvalidValue => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidBody => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidQuery => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidPath => StatusCode::BAD_REQUEST,
            ErrorKind::Missing => StatusCode::BAD_REQUEST,
            ErrorKind::InvalidRules => StatusCode::BAD_REQUEST,
            ErrorKind::WeakPassword => StatusCode::BAD_REQUEST,
            ErrorKind::Version => StatusCode::BAD_REQUEST,
            ErrorKind::Schema => StatusCode::BAD_REQUEST,
            ErrorKind::UnknownField => StatusCode::BAD_REQUEST,
            ErrorKind::Compression => StatusCode::BAD_REQUEST,
            ErrorKind::BodyUnreadable => StatusCode::BAD_REQUEST,
            ErrorKind::Unauthenticated => StatusCode::UNAUTHORIZED,
            ErrorKind::InvalidCredentials => StatusCode::UNAUTHORIZED,
            ErrorKind::Locked => StatusCode::UNAUTHORIZED,
            ErrorKind::Forbidden => StatusCode::FORBIDDEN,
            ErrorKind::Csrf => StatusCode::FORBIDDEN,
            ErrorKind::AgentMismatch => StatusCode::FORBIDDEN,
            ErrorKind::EnrollmentDisabled => StatusCode::FORBIDDEN,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::Exists => StatusCode::CONFLICT,
            ErrorKind::Conflict => StatusCode::CONFLICT,
            ErrorKind::BodyTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::DecompressedTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::ContentType => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::ContentEncoding => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            ErrorKind::FormatUnavailable => StatusCode::UNPROCESSABLE_ENTITY,
            ErrorKind::SeriesLimit | ErrorKind::TooManySeries => StatusCode::BAD_REQUEST,
            ErrorKind::TooManyRequests => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
            ErrorKind::Overloaded => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        }
    }
}

/// Every API failure. 4xx are the caller's problem and are not logged as errors; 5xx hide the
/// cause from the client and are logged.
#[derive(Debug)]
pub struct ApiError {
    pub kind: ErrorKind,
    pub field: Option<String>,
    pub message: String,
    pub retry_after_secs: Option<u64>,
}

impl ApiError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> ApiError {
        ApiError {
            kind,
            field: None,
            message: message.into(),
            retry_after_secs: None,
        }
    }

    /// A 400 `invalid_value` naming `field`.
    pub fn invalid(field: impl Into<String>, message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorKind::InvalidValue, message).field(field)
    }

    pub fn status(&self) -> StatusCode {
        self.kind.status()
    }

    pub fn field(mut self, field: impl Into<String>) -> ApiError {
        self.field = Some(field.into());
        self
    }

    pub fn retry_after(mut self, secs: u64) -> ApiError {
        self.retry_after_secs = Some(secs);
        self
    }

    pub fn overloaded(message: &str, retry_after_secs: u64) -> ApiError {
        ApiError::new(ErrorKind::Overloaded, message).retry_after(retry_after_secs)
    }

    pub fn too_many(message: &str, retry_after_secs: u64) -> ApiError {
        ApiError::new(ErrorKind::TooManyRequests, message).retry_after(retry_after_secs)
    }

    pub fn unavailable(message: &str) -> ApiError {
        ApiError::new(ErrorKind::Unavailable, message).retry_after(5)
    }

    pub fn not_found(what: &str) -> ApiError {
        ApiError::new(ErrorKind::NotFound, format!("{what} not found"))
    }

    /// A server-side failure: logged here, reported to the client without details.
    pub fn internal(e: impl std::fmt::Display) -> ApiError {
        tracing::error!(error = %e, "internal error");
        ApiError::new(ErrorKind::Internal, "internal error")
    }
}

impl From<crate::ingest::Rejected> for ApiError {
    fn from(r: crate::ingest::Rejected) -> ApiError {
        use crate::ingest::Rejected as R;
        let message = r.to_string();
        match r {
            R::UnknownAgent => ApiError::new(ErrorKind::Unauthenticated, message).field("agent_id"),
            R::Revoked => ApiError::new(ErrorKind::Unauthenticated, message).field("authorization"),
            R::SeriesLimit { sample, .. } => {
                ApiError::new(ErrorKind::SeriesLimit, message).field(format!("samples[{sample}]"))
            }
            R::StoreUnavailable => ApiError::unavailable(&message),
        }
    }
}

impl From<crate::contracts::ContractError> for ApiError {
    fn from(e: crate::contracts::ContractError) -> ApiError {
        use crate::contracts::ContractError as E;
        match e {
            E::Period(p) => ApiError::invalid("period", p.to_string()),
            E::Compute(crate::compute::ComputeError::TimedOut(_)) => {
                ApiError::unavailable(&e.to_string())
            }
            E::Invalid(_) | E::Store(_) | E::Compute(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::appeals::AppealError> for ApiError {
    fn from(e: crate::appeals::AppealError) -> ApiError {
        use crate::appeals::AppealError as E;
        match e {
            E::Invalid { field, message } => {
                ApiError::new(ErrorKind::InvalidValue, message).field(field)
            }
            E::NotFound(what) => ApiError::not_found(what),
            E::Conflict { field, message } => {
                ApiError::new(ErrorKind::Conflict, message).field(field)
            }
            E::OwnAppeal => ApiError::new(ErrorKind::Forbidden, e.to_string()).field("id"),
            E::NotAParty(m) => ApiError::new(ErrorKind::Forbidden, m),
            E::Contract(c) => c.into(),
            E::Report(r) => ApiError::internal(r),
            E::Store(_) => ApiError::internal(e),
        }
    }
}

impl From<crate::membership::MembershipError> for ApiError {
    fn from(e: crate::membership::MembershipError) -> ApiError {
        use crate::membership::MembershipError as E;
        match e {
            E::UnknownSystem(_) => ApiError::invalid("system", e.to_string()),
            E::UnknownSubject(_) => ApiError::invalid("subject", e.to_string()),
            E::Backdated { .. } => ApiError::invalid("effective_from_ms", e.to_string()),
            E::Empty(field) => ApiError::invalid(field, e.to_string()),
            E::Conflict(_) => ApiError::new(ErrorKind::Conflict, e.to_string()),
            E::Store(_) => ApiError::internal(e),
        }
    }
}

/// The field a serde error message names (`` unknown field `x` ``, `` missing field `y` ``), if any.
pub(super) fn serde_field(message: &str) -> Option<String> {
    message.split('`').nth(1).map(str::to_string)
}

/// Parses a JSON request body; a bad one is a 400 naming the field serde complained about
/// (`body` when it names none).
pub fn json_body<T: serde::de::DeserializeOwned>(b: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(b).map_err(|e| {
        let msg = e.to_string();
        let field = serde_field(&msg).unwrap_or_else(|| "body".to_string());
        ApiError::new(ErrorKind::InvalidBody, msg).field(field)
    })
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let status = self.status();
        let body = ErrorBody {
            error: ErrorDetail {
                kind: self.kind.as_str().to_string(),
                field: self.field,
                message: self.message,
            },
        };
        let mut resp = (status, Json(body)).into_response();
        if let Some(s) = self.retry_after_secs {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(s));
        }
        resp
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// Walks every kind: a distinct name, an error status, and the documented JSON shape.
    #[tokio::test]
    async fn every_kind_has_one_name_an_error_status_and_the_json_shape() {
        let mut names = BTreeSet::new();
        for kind in ErrorKind::ALL {
            assert!(names.insert(kind.as_str()), "{kind:?}: name used twice");
            assert!(
                kind.as_str()
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c == '_'),
                "{kind:?}"
            );
            let status = kind.status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{kind:?}"
            );
            let resp = ApiError::new(kind, "m").field("f").into_response();
            assert_eq!(resp.status(), status);
            let body = axum::body::to_bytes(resp.into_body(), 1 << 16)
                .await
                .unwrap();
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
            assert_eq!(
                v,
                serde_json::json!({ "error": { "kind": kind.as_str(), "field": "f", "message": "m" } })
            );
        }
    }

    #[test]
    fn retry_after_is_sent_for_overload() {
        let resp = ApiError::overloaded("full", 7).into_response();
        assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(resp.headers()[header::RETRY_AFTER], "7");
    }
}
