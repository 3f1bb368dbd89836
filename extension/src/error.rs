//! Every way a request can fail, and the one mapping from failure to HTTP status.
//!
//! Bodies are `{"error": CODE, "message": TEXT}`. The status tells the caller what to
//! do: fix the request (400), the token or allowlist (401/403), give up on the id
//! (404), retry later (429, 502, 503, 504). Messages name ids and parameters only.

use http::StatusCode;

use crate::backend::{ErrorKind, UpstreamError};
use crate::query::QueryError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadQuery(QueryError),
    MissingToken,
    WrongToken,
    NotAllowed,
    ForwardedFor,
    NoRoute,
    MethodNotAllowed,
    Upstream(UpstreamError),
    JsonKeyMissing,
    NotJsonObject,
    ShuttingDown,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadQuery(_) | ApiError::ForwardedFor | ApiError::NotJsonObject => StatusCode::BAD_REQUEST,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::WrongToken | ApiError::NotAllowed => StatusCode::FORBIDDEN,
            ApiError::NoRoute | ApiError::JsonKeyMissing => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::ShuttingDown => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(e) => match e.kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::AccessDenied => StatusCode::FORBIDDEN,
                ErrorKind::Invalid => StatusCode::BAD_REQUEST,
                ErrorKind::Throttled => StatusCode::TOO_MANY_REQUESTS,
                ErrorKind::Unavailable => StatusCode::BAD_GATEWAY,
                ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
                ErrorKind::Aborted => StatusCode::SERVICE_UNAVAILABLE,
            },
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadQuery(_) => "BadRequest",
            ApiError::MissingToken => "MissingToken",
            ApiError::WrongToken => "InvalidToken",
            ApiError::NotAllowed => "NotAllowed",
            ApiError::ForwardedFor => "ForwardedRequest",
            ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::JsonKeyMissing => "JsonKeyNotFound",
            ApiError::NotJsonObject => "NotJsonObject",
            ApiError::ShuttingDown => "ShuttingDown",
            ApiError::Upstream(e) => match e.kind {
                ErrorKind::NotFound => "ResourceNotFound",
                ErrorKind::AccessDenied => "AccessDenied",
                ErrorKind::Invalid => "UpstreamRejected",
                ErrorKind::Throttled => "Throttled",
                ErrorKind::Unavailable => "UpstreamUnavailable",
                ErrorKind::Timeout => "UpstreamTimeout",
                ErrorKind::Aborted => "Aborted",
            },
        }
    }

    pub fn message(&self) -> String {
        match self {
            ApiError::BadQuery(e) => e.0.clone(),
            ApiError::MissingToken => "the X-Aws-Parameters-Secrets-Token header is required".into(),
            ApiError::WrongToken => "the X-Aws-Parameters-Secrets-Token header does not match".into(),
            ApiError::NotAllowed => "this id is not in SECRETS_SIDECAR_ALLOW".into(),
            ApiError::ForwardedFor => "forwarded requests (X-Forwarded-For) are refused".into(),
            ApiError::NoRoute => {
                "no such route; use /secretsmanager/get, /systemsmanager/parameters/get, /ping or /metrics".into()
            }
            ApiError::MethodNotAllowed => "only GET is supported".into(),
            ApiError::JsonKeyMissing => "the value has no such top-level field".into(),
            ApiError::NotJsonObject => "jsonKey needs a value that is a JSON object".into(),
            ApiError::ShuttingDown => "the sidecar is shutting down".into(),
            ApiError::Upstream(e) => e.detail.clone(),
        }
    }
}

impl From<QueryError> for ApiError {
    fn from(e: QueryError) -> Self {
        ApiError::BadQuery(e)
    }
}

impl From<UpstreamError> for ApiError {
    fn from(e: UpstreamError) -> Self {
        ApiError::Upstream(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn upstream_kinds_map_to_actionable_statuses() {
        let status = |kind| ApiError::Upstream(UpstreamError::new(kind, "x")).status().as_u16();
        assert_eq!(status(ErrorKind::NotFound), 404);
        assert_eq!(status(ErrorKind::AccessDenied), 403);
        assert_eq!(status(ErrorKind::Invalid), 400);
        assert_eq!(status(ErrorKind::Throttled), 429);
        assert_eq!(status(ErrorKind::Unavailable), 502);
        assert_eq!(status(ErrorKind::Timeout), 504);
        assert_eq!(status(ErrorKind::Aborted), 503);
    }

    #[test]
    fn request_errors_map_to_client_statuses() {
        assert_eq!(ApiError::MissingToken.status(), 401);
        assert_eq!(ApiError::WrongToken.status(), 403);
        assert_eq!(ApiError::NotAllowed.status(), 403);
        assert_eq!(ApiError::ForwardedFor.status(), 400);
        assert_eq!(ApiError::NoRoute.status(), 404);
        assert_eq!(ApiError::MethodNotAllowed.status(), 405);
        assert_eq!(ApiError::BadQuery(QueryError("x".into())).status(), 400);
        assert_eq!(ApiError::JsonKeyMissing.status(), 404);
        assert_eq!(ApiError::NotJsonObject.status(), 400);
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            ApiError::BadQuery(QueryError("x".into())),
            ApiError::MissingToken,
            ApiError::WrongToken,
            ApiError::NotAllowed,
            ApiError::ForwardedFor,
            ApiError::NoRoute,
            ApiError::MethodNotAllowed,
            ApiError::JsonKeyMissing,
            ApiError::NotJsonObject,
            ApiError::ShuttingDown,
        ];
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
