//! Why a lookup gives no value, as one type for both front doors, and the one
//! table that says how each door renders it: the extension API's status and
//! `error` code, the SDK protocol's status and `__type` (AWS's own exception names,
//! so an SDK raises its ordinary exceptions).
//!
//! Messages name ids and AWS's error text, never a value.

use std::sync::Arc;

use crate::backend::{ErrorKind, UpstreamError};
use crate::metrics::Refused;

/// A lookup that gives no value.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Refusal {
    /// The id is outside the allowlist, or names something other than the allowed
    /// identity it resembles (a look-alike): the caller learns nothing about what
    /// exists outside the list.
    NotAllowed { id: Arc<str> },
    /// `roleArn` names a role the allowlist does not list.
    RoleNotAllowed,
    /// Another tenant's instance of a `{tenant}` template: answered exactly as an
    /// id outside the allowlist, counted apart.
    OtherTenant { id: Arc<str> },
    /// A `{tenant}` template's id before Lambda named the tenant, or where it
    /// never will (`crate::tenant::Refused`).
    TenantUnknown { why: String },
    /// A value asked for during a SnapStart INIT (see `gate`).
    SnapStartInit,
    /// Upstream failed and nothing servable is cached.
    Upstream(UpstreamError),
}

/// Every kind of refusal, one row each in [`TABLE`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    NotAllowed,
    RoleNotAllowed,
    TenantUnknown,
    SnapStartInit,
    NotFound,
    AccessDenied,
    Invalid,
    Throttled,
    Unavailable,
    Timeout,
    Aborted,
}

/// How each door renders one kind.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Row {
    pub kind: Kind,
    /// The extension API: HTTP status and the body's `error` code.
    pub status: u16,
    pub code: &'static str,
    /// The SDK protocol: HTTP status and `__type`, for Secrets Manager and for SSM
    /// (the services name some exceptions differently).
    pub sdk_status: u16,
    pub secrets_manager_type: &'static str,
    pub ssm_type: &'static str,
}

const fn row(kind: Kind, status: u16, code: &'static str, sdk: (u16, &'static str, &'static str)) -> Row {
    Row {
        kind,
        status,
        code,
        sdk_status: sdk.0,
        secrets_manager_type: sdk.1,
        ssm_type: sdk.2,
    }
}

// The SDK protocol's answers, as (status, Secrets Manager's `__type`, SSM's), each
// named once so the table below reads one row a line.
const ACCESS_DENIED: (u16, &str, &str) = (400, "AccessDeniedException", "AccessDeniedException");
const VALIDATION: (u16, &str, &str) = (400, "ValidationException", "ValidationException");
const NOT_FOUND: (u16, &str, &str) = (400, "ResourceNotFoundException", "ParameterNotFound");
const INVALID_REQUEST: (u16, &str, &str) = (400, "InvalidRequestException", "ValidationException");
const THROTTLING: (u16, &str, &str) = (400, "ThrottlingException", "ThrottlingException");
const INTERNAL: (u16, &str, &str) = (500, "InternalServiceError", "InternalServerError");

/// The one table. The extension API's statuses tell a caller what to do: fix the
/// request or the allowlist (400/403), give up on the id (404), retry later (429,
/// 502, 503, 504). The SDK's are AWS's own: 400 for what the caller must change, 500
/// for what the SDK retries.
pub const TABLE: [Row; 11] = [
    row(Kind::NotAllowed, 403, "NotAllowed", ACCESS_DENIED),
    row(Kind::RoleNotAllowed, 403, "NotAllowed", ACCESS_DENIED),
    // Retried by an SDK: the binding may still come within the invoke.
    row(Kind::TenantUnknown, 503, "TenantUnknown", INTERNAL),
    // Not retried by an SDK: the gate stays closed for the whole INIT.
    row(Kind::SnapStartInit, 503, "SnapStartInit", VALIDATION),
    row(Kind::NotFound, 404, "ResourceNotFound", NOT_FOUND),
    row(Kind::AccessDenied, 403, "AccessDenied", ACCESS_DENIED),
    row(Kind::Invalid, 400, "UpstreamRejected", INVALID_REQUEST),
    row(Kind::Throttled, 429, "Throttled", THROTTLING),
    row(Kind::Unavailable, 502, "UpstreamUnavailable", INTERNAL),
    row(Kind::Timeout, 504, "UpstreamTimeout", INTERNAL),
    row(Kind::Aborted, 503, "Aborted", INTERNAL),
];

impl Refusal {
    pub fn kind(&self) -> Kind {
        match self {
            Refusal::NotAllowed { .. } | Refusal::OtherTenant { .. } => Kind::NotAllowed,
            Refusal::RoleNotAllowed => Kind::RoleNotAllowed,
            Refusal::TenantUnknown { .. } => Kind::TenantUnknown,
            Refusal::SnapStartInit => Kind::SnapStartInit,
            Refusal::Upstream(e) => match e.kind {
                ErrorKind::NotFound => Kind::NotFound,
                ErrorKind::AccessDenied => Kind::AccessDenied,
                ErrorKind::NotAllowed => Kind::NotAllowed,
                ErrorKind::Invalid => Kind::Invalid,
                ErrorKind::Throttled => Kind::Throttled,
                ErrorKind::Unavailable => Kind::Unavailable,
                ErrorKind::Timeout => Kind::Timeout,
                ErrorKind::Aborted => Kind::Aborted,
            },
        }
    }

    /// This refusal's row of [`TABLE`].
    pub fn row(&self) -> &'static Row {
        let kind = self.kind();
        TABLE.iter().find(|r| r.kind == kind).unwrap_or(&TABLE[0])
    }

    /// The sidecar's own reason, for the metrics; `None` for upstream failures
    /// (the cache counts those by kind).
    pub fn reason(&self) -> Option<Refused> {
        match self {
            Refusal::NotAllowed { .. } => Some(Refused::NotAllowed),
            Refusal::RoleNotAllowed => Some(Refused::RoleNotAllowed),
            Refusal::OtherTenant { .. } => Some(Refused::OtherTenant),
            Refusal::TenantUnknown { .. } => Some(Refused::TenantUnknown),
            Refusal::SnapStartInit => Some(Refused::SnapStartInit),
            Refusal::Upstream(_) => None,
        }
    }

    /// The message both doors send: the id or AWS's error text, never a value.
    pub fn message(&self) -> String {
        match self {
            // The same words as outside the allowlist: the caller learns nothing
            // about other tenants.
            Refusal::NotAllowed { id } | Refusal::OtherTenant { id } => {
                format!("'{id}' is not in SECRETS_SIDECAR_ALLOW")
            }
            Refusal::TenantUnknown { why } => why.clone(),
            Refusal::RoleNotAllowed => "roleArn names a role SECRETS_SIDECAR_ALLOW does not list (role:PATTERN)".into(),
            Refusal::SnapStartInit => {
                "values are not served during a SnapStart INIT: whatever is fetched now would be \
                                       copied into every restored environment; read secrets in the handler or in an \
                                       after-restore hook"
                    .into()
            }
            Refusal::Upstream(e) => e.detail.clone(),
        }
    }
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl std::error::Error for Refusal {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_kind_has_exactly_one_row() {
        let kinds = [
            Kind::NotAllowed,
            Kind::RoleNotAllowed,
            Kind::TenantUnknown,
            Kind::SnapStartInit,
            Kind::NotFound,
            Kind::AccessDenied,
            Kind::Invalid,
            Kind::Throttled,
            Kind::Unavailable,
            Kind::Timeout,
            Kind::Aborted,
        ];
        for kind in kinds {
            assert_eq!(TABLE.iter().filter(|r| r.kind == kind).count(), 1, "{kind:?}");
        }
        assert_eq!(TABLE.len(), kinds.len());
    }

    #[test]
    fn upstream_kinds_find_their_rows() {
        for kind in ErrorKind::ALL {
            let r = Refusal::Upstream(UpstreamError::new(kind, "x"));
            assert_eq!(r.row().kind, r.kind());
            assert!(r.reason().is_none(), "upstream failures are counted by the cache");
        }
        let status = |kind| Refusal::Upstream(UpstreamError::new(kind, "x")).row().status;
        assert_eq!(status(ErrorKind::NotFound), 404);
        assert_eq!(status(ErrorKind::Throttled), 429);
        assert_eq!(status(ErrorKind::Unavailable), 502);
        assert_eq!(status(ErrorKind::Timeout), 504);
    }

    #[test]
    fn messages_name_the_id_only() {
        let r = Refusal::NotAllowed { id: "app/db".into() };
        assert_eq!(r.message(), "'app/db' is not in SECRETS_SIDECAR_ALLOW");
        assert_eq!(r.reason(), Some(Refused::NotAllowed));
    }
}
