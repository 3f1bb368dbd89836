//! Every way an extension-API request can fail, and its HTTP status and code.
//!
//! Bodies are `{"error": CODE, "message": TEXT}`. The status tells the caller what to
//! do: fix the request (400), the token (401/403), give up on the id (404). The
//! lookup's refusals (allowlist, SnapStart, upstream) take their status and code
//! from the one table both doors share (`lookup::refusal::TABLE`). Messages name
//! ids and parameters only.

use http::StatusCode;

use super::query::QueryError;
use crate::server::lookup::Refusal;

/// Why a request was not answered with a value. `Display` is the message sent.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadQuery(#[from] QueryError),
    #[error("the X-Aws-Parameters-Secrets-Token header is required")]
    MissingToken,
    #[error("the X-Aws-Parameters-Secrets-Token header does not match")]
    WrongToken,
    #[error("forwarded requests (X-Forwarded-For) are refused")]
    ForwardedFor,
    #[error(
        "no such route; use /secretsmanager/get, /secretsmanager/{{id}}, /systemsmanager/parameters/get, /ping or /metrics"
    )]
    NoRoute,
    #[error("only GET is supported")]
    MethodNotAllowed,
    /// The lookup's refusal: the allowlist, the SnapStart gate, or upstream's
    /// failure with AWS's code and message (ids, never values).
    #[error("{0}")]
    Refused(#[from] Refusal),
    #[error("the value has no such top-level field")]
    JsonKeyMissing,
    #[error("jsonKey needs a value that is a JSON object")]
    NotJsonObject,
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadQuery(_) | ApiError::ForwardedFor | ApiError::NotJsonObject => StatusCode::BAD_REQUEST,
            ApiError::MissingToken => StatusCode::UNAUTHORIZED,
            ApiError::WrongToken => StatusCode::FORBIDDEN,
            ApiError::NoRoute | ApiError::JsonKeyMissing => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Refused(r) => StatusCode::from_u16(r.row().status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
        }
    }

    pub fn code(&self) -> &'static str {
        match self {
            ApiError::BadQuery(_) => "BadRequest",
            ApiError::MissingToken => "MissingToken",
            ApiError::WrongToken => "InvalidToken",
            ApiError::ForwardedFor => "ForwardedRequest",
            ApiError::NoRoute => "NotFound",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::JsonKeyMissing => "JsonKeyNotFound",
            ApiError::NotJsonObject => "NotJsonObject",
            ApiError::Refused(r) => r.row().code,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::{ErrorKind, UpstreamError};

    fn upstream(kind: ErrorKind, detail: &str) -> ApiError {
        ApiError::Refused(Refusal::Upstream(UpstreamError::new(kind, detail)))
    }

    #[test]
    fn upstream_kinds_map_to_actionable_statuses() {
        let status = |kind| upstream(kind, "x").status().as_u16();
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
        assert_eq!(ApiError::Refused(Refusal::NotAllowed { id: "x".into() }).status(), 403);
        assert_eq!(ApiError::Refused(Refusal::RoleNotAllowed).status(), 403);
        assert_eq!(ApiError::ForwardedFor.status(), 400);
        assert_eq!(ApiError::NoRoute.status(), 404);
        assert_eq!(ApiError::MethodNotAllowed.status(), 405);
        assert_eq!(ApiError::BadQuery(QueryError("x".into())).status(), 400);
        assert_eq!(ApiError::JsonKeyMissing.status(), 404);
        assert_eq!(ApiError::NotJsonObject.status(), 400);
        assert_eq!(ApiError::Refused(Refusal::SnapStartInit).status(), 503);
    }

    #[test]
    fn messages_are_the_display_text() {
        assert_eq!(
            ApiError::from(QueryError("'secretId' is required".into())).to_string(),
            "'secretId' is required"
        );
        assert_eq!(
            upstream(ErrorKind::NotFound, "ResourceNotFoundException: no such secret").to_string(),
            "ResourceNotFoundException: no such secret"
        );
        let refused = ApiError::Refused(Refusal::NotAllowed { id: "app/x".into() });
        assert_eq!(refused.to_string(), "'app/x' is not in SECRETS_SIDECAR_ALLOW");
    }

    #[test]
    fn codes_are_distinct() {
        let all = [
            ApiError::BadQuery(QueryError("x".into())),
            ApiError::MissingToken,
            ApiError::WrongToken,
            ApiError::Refused(Refusal::NotAllowed { id: "x".into() }),
            ApiError::ForwardedFor,
            ApiError::NoRoute,
            ApiError::MethodNotAllowed,
            ApiError::JsonKeyMissing,
            ApiError::NotJsonObject,
            ApiError::Refused(Refusal::SnapStartInit),
        ];
        let mut codes: Vec<&str> = all.iter().map(ApiError::code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), all.len());
    }
}
