//! What the API answers when it cannot answer the weather: JSON bodies with a status
//! that says whose fault it is. Messages never carry a key.

use http::StatusCode;

use crate::sidecar::SidecarError;

/// Each variant's `Display` is the `message` of its JSON body.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadCoordinates(String),
    #[error("use GET /{{provider}}/{{latitude}}/{{longitude}} with provider darksky, openweathermap or here")]
    NotFound,
    #[error("only GET")]
    MethodNotAllowed,
    /// The provider answered 401 or 403: the key is wrong or was rotated. The handler
    /// refreshes the key and retries once on this variant (and no other).
    #[error("{provider}: the key was refused")]
    KeyRefused { provider: &'static str },
    /// The provider answered with another error, or with something unreadable.
    #[error("{provider}: {detail}")]
    Provider { provider: &'static str, detail: String },
    #[error("{provider} did not answer in time")]
    ProviderTimeout { provider: &'static str },
    /// The sidecar could not hand out the key.
    #[error("cannot get the provider key: {0}")]
    Sidecar(SidecarError),
    /// The key's name holds `{tenant}` but Lambda named no tenant for this invoke
    /// (the function is not in tenant isolation mode).
    #[error("{provider}: the key is per tenant and Lambda named no tenant for this invoke")]
    NoTenant { provider: &'static str },
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadCoordinates(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::KeyRefused { .. } | ApiError::Provider { .. } => StatusCode::BAD_GATEWAY,
            ApiError::ProviderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Sidecar(_) => StatusCode::SERVICE_UNAVAILABLE,
            ApiError::NoTenant { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let code = match self {
            ApiError::BadCoordinates(_) => "BadCoordinates",
            ApiError::NotFound => "NotFound",
            ApiError::MethodNotAllowed => "MethodNotAllowed",
            ApiError::KeyRefused { .. } | ApiError::Provider { .. } => "ProviderError",
            ApiError::ProviderTimeout { .. } => "ProviderTimeout",
            ApiError::Sidecar(_) => "KeyUnavailable",
            ApiError::NoTenant { .. } => "TenantMissing",
        };
        serde_json::json!({ "error": code, "message": self.to_string() })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statuses() {
        assert_eq!(ApiError::BadCoordinates("x".into()).status(), 400);
        assert_eq!(ApiError::NotFound.status(), 404);
        assert_eq!(ApiError::MethodNotAllowed.status(), 405);
        assert_eq!(
            ApiError::Provider {
                provider: "here",
                detail: "x".into()
            }
            .status(),
            502
        );
        assert_eq!(ApiError::KeyRefused { provider: "here" }.status(), 502);
        assert_eq!(ApiError::ProviderTimeout { provider: "here" }.status(), 504);
        assert_eq!(ApiError::Sidecar(SidecarError::Timeout).status(), 503);
    }

    #[test]
    fn bodies() {
        let body = |e: ApiError| e.body().to_string();
        assert_eq!(
            body(ApiError::KeyRefused { provider: "here" }),
            r#"{"error":"ProviderError","message":"here: the key was refused"}"#
        );
        assert_eq!(
            body(ApiError::Provider {
                provider: "darksky",
                detail: "answered 500".into()
            }),
            r#"{"error":"ProviderError","message":"darksky: answered 500"}"#
        );
        assert_eq!(
            body(ApiError::ProviderTimeout { provider: "here" }),
            r#"{"error":"ProviderTimeout","message":"here did not answer in time"}"#
        );
        assert_eq!(
            body(ApiError::NotFound),
            r#"{"error":"NotFound","message":"use GET /{provider}/{latitude}/{longitude} with provider darksky, openweathermap or here"}"#
        );
        assert_eq!(
            body(ApiError::Sidecar(SidecarError::Refused {
                status: 404,
                code: "ResourceNotFound".into()
            })),
            r#"{"error":"KeyUnavailable","message":"cannot get the provider key: sidecar answered 404 ResourceNotFound"}"#
        );
        assert_eq!(
            body(ApiError::MethodNotAllowed),
            r#"{"error":"MethodNotAllowed","message":"only GET"}"#
        );
        assert_eq!(
            body(ApiError::BadCoordinates("latitude must be a finite number".into())),
            r#"{"error":"BadCoordinates","message":"latitude must be a finite number"}"#
        );
    }
}
