//! What the API answers when it cannot answer the weather: JSON bodies with a status
//! that says whose fault it is. Messages never carry a key.

use http::StatusCode;

use crate::sidecar::SidecarError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ApiError {
    BadCoordinates(String),
    NotFound,
    MethodNotAllowed,
    /// The provider refused the key even after a refresh, or answered with an error.
    Provider {
        provider: &'static str,
        detail: String,
    },
    ProviderTimeout {
        provider: &'static str,
    },
    /// The sidecar could not hand out the key.
    Sidecar(SidecarError),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            ApiError::BadCoordinates(_) => StatusCode::BAD_REQUEST,
            ApiError::NotFound => StatusCode::NOT_FOUND,
            ApiError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ApiError::Provider { .. } => StatusCode::BAD_GATEWAY,
            ApiError::ProviderTimeout { .. } => StatusCode::GATEWAY_TIMEOUT,
            ApiError::Sidecar(_) => StatusCode::SERVICE_UNAVAILABLE,
        }
    }

    pub fn body(&self) -> serde_json::Value {
        let (code, message) = match self {
            ApiError::BadCoordinates(m) => ("BadCoordinates", m.clone()),
            ApiError::NotFound => (
                "NotFound",
                "use GET /{provider}/{latitude}/{longitude} with provider darksky, openweathermap or here".into(),
            ),
            ApiError::MethodNotAllowed => ("MethodNotAllowed", "only GET".into()),
            ApiError::Provider { provider, detail } => ("ProviderError", format!("{provider}: {detail}")),
            ApiError::ProviderTimeout { provider } => ("ProviderTimeout", format!("{provider} did not answer in time")),
            ApiError::Sidecar(e) => ("KeyUnavailable", format!("cannot get the provider key: {e}")),
        };
        serde_json::json!({ "error": code, "message": message })
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
        assert_eq!(ApiError::ProviderTimeout { provider: "here" }.status(), 504);
        assert_eq!(ApiError::Sidecar(SidecarError::Timeout).status(), 503);
    }
}
