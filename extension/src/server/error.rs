//! Every way a request can fail, and the one mapping from failure to HTTP status.
//!
//! Bodies are `{"error": CODE, "message": TEXT}`. The status tells the caller what to
//! do: fix the request (400), the token or allowlist (401/403), give up on the id
//! (404), retry later (429, 502, 503, 504). Messages name ids and parameters only.

use http::StatusCode;

use super::query::QueryError;
use crate::backend::{ErrorKind, UpstreamError};

/// Why a request was not answered with a value. `Display` is the message sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadQuery(#[from] QueryError),
    #[error("the X-Aws-Parameters-Secrets-Token header is required")]
    MissingToken,
    #[error("the X-Aws-Parameters-Secrets-Token header does not match")]
    WrongToken,
    #[error("this id is not in SECRETS_SIDECAR_ALLOW")]
    NotAllowed,
    #[error("roleArn names a role SECRETS_SIDECAR_ALLOW does not list (role:PATTERN)")]
    RoleNotAllowed,
    #[error("forwarded requests (X-Forwarded-For) are refused")]
    ForwardedFor,
    #[error(
        "no such route; use /secretsmanager/get, /secretsmanager/{{id}}, /systemsmanager/parameters/get, /ping or /metrics"
    )]
    NoRoute,
    #[error("only GET is supported")]
    MethodNotAllowed,
    /// The upstream failure's detail: AWS's code and message (ids, never values).
    #[error("{}", .0.detail)]
    Upstream(#[from] UpstreamError),
    #[error("the value has no such top-level field")]
    JsonKeyMissing,
    #[error("jsonKey needs a value that is a JSON object")]
    NotJsonObject,
    #[error(
        "values are not served during a SnapStart INIT: whatever is fetched now would be copied into every \
         restored environment; read secrets in the handler or in an after-restore hook"
    )]
    SnapStartInit,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadQuery(_) | ApiError::ForwardedFor | ApiError::NotJsonObject => StatusCode::BAD_REQUEST,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::WrongToken | ApiError::NotAllowed | ApiError::RoleNotAllowed => StatusCode::FORBIDDEN,
            ApiError::NoRoute | ApiError::JsonKeyMissing => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::SnapStartInit => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::Upstream(e) => match e.kind {
                ErrorKind::NotFound => StatusCode::NOT_FOUND,
                ErrorKind::AccessDenied | ErrorKind::NotAllowed => StatusCode::FORBIDDEN,
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
            ApiError::NotAllowed | ApiError::RoleNotAllowed => "NotAllowed",
            ApiError::ForwardedFor => "ForwardedRequest",
            ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::JsonKeyMissing => "JsonKeyNotFound",
            ApiError::NotJsonObject => "NotJsonObject",
            ApiError::SnapStartInit => "SnapStartInit",
            ApiError::Upstream(e) => match e.kind {
                ErrorKind::NotFound => "ResourceNotFound",
                ErrorKind::AccessDenied => "AccessDenied",
                ErrorKind::Invalid => "UpstreamRejected",
                ErrorKind::Throttled => "Throttled",
                ErrorKind::Unavailable => "UpstreamUnavailable",
                ErrorKind::Timeout => "UpstreamTimeout",
                ErrorKind::Aborted => "Aborted",
                ErrorKind::NotAllowed => "NotAllowed",
            },
        }
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
        assert_eq!(ApiError::SnapStartInit.status(), 503);
    }

    #[test]
    fn messages_are_the_display_text() {
        assert_eq!(
            ApiError::from(QueryError("'secretId' is required".into())).to_string(),
            "'secretId' is required"
        );
        let upstream = UpstreamError::new(ErrorKind::NotFound, "ResourceNotFoundException: no such secret");
        assert_eq!(
            ApiError::from(upstream).to_string(),
            "ResourceNotFoundException: no such secret"
        );
        assert!(ApiError::NotAllowed.to_string().contains("SECRETS_SIDECAR_ALLOW"));
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
            ApiError::SnapStartInit,
        ];
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
