//! A client of Lambda's Extensions API (`/2020-01-01/extension/...` on
//! `AWS_LAMBDA_RUNTIME_API`): register, wait for the next event, report errors.
//!
//! Our own rather than `lambda-extension`'s run loop, because the platforms differ in
//! what an extension may do and that loop gets two of them wrong: it always registers
//! for INVOKE (Managed Instances refuses that with 403 and then fails the whole
//! environment), and it calls `event/next` again after SHUTDOWN (Lambda's emulator
//! logs that as an illegal state transition). Here the caller decides which events
//! to register for and when to stop asking. `next` has no timeout: it blocks until
//! Lambda has an event, across freezes.

use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

const NAME_HEADER: &str = "Lambda-Extension-Name";
const ID_HEADER: &str = "Lambda-Extension-Identifier";
const ERROR_TYPE_HEADER: &str = "Lambda-Extension-Function-Error-Type";
/// Bound on the calls that answer at once (register, error reports); never on `next`.
const CALL_TIMEOUT: Duration = Duration::from_secs(5);

/// The events an extension can register for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventType {
    Invoke,
    Shutdown,
}

impl EventType {
    fn wire(self) -> &'static str {
        match self {
            EventType::Invoke => "INVOKE",
            EventType::Shutdown => "SHUTDOWN",
        }
    }
}

/// An event from `event/next`.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
#[serde(tag = "eventType", rename_all = "UPPERCASE")]
pub enum Event {
    #[serde(rename_all = "camelCase")]
    Invoke { deadline_ms: u64, request_id: String },
    /// `shutdownReason` is lower-case in Lambda's own emulator, upper-case in the
    /// documentation, and other words in older emulators: kept as sent.
    #[serde(rename_all = "camelCase")]
    Shutdown { deadline_ms: u64, shutdown_reason: String },
}

/// Why a call to the Extensions API failed.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("cannot build the request: {0}")]
    Request(#[from] http::Error),
    #[error("the Extensions API did not answer: {0}")]
    Unreachable(String),
    #[error("the Extensions API answered {status}: {error_type} {message}")]
    Refused {
        status: StatusCode,
        error_type: String,
        message: String,
    },
    #[error("unreadable answer from the Extensions API: {0}")]
    Unreadable(String),
}

/// The body of a refusal (`{"errorMessage","errorType"}`), as far as it parses.
#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct Refusal {
    #[serde(default)]
    error_message: String,
    #[serde(default)]
    error_type: String,
}

pub struct ExtensionsApi {
    base: String,
    /// The Telemetry API's subscription URL.
    telemetry: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl ExtensionsApi {
    /// The client for `runtime_api` (`host:port`, no scheme, as Lambda sets it).
    pub fn new(runtime_api: &str) -> ExtensionsApi {
        ExtensionsApi {
            base: format!("http://{runtime_api}/2020-01-01/extension"),
            telemetry: format!("http://{runtime_api}/2022-07-01/telemetry"),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// Registers `name` (the executable's file name, or Lambda treats it as an
    /// internal extension) for `events`; returns the extension id.
    pub async fn register(&self, name: &str, events: &[EventType]) -> Result<String, ApiError> {
        let events: Vec<&str> = events.iter().map(|e| e.wire()).collect();
        let body = serde_json::json!({ "events": events }).to_string();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/register", self.base))
            .header(NAME_HEADER, name)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let (status, headers, _) = self.call(req, Some(CALL_TIMEOUT)).await?;
        let id = headers
            .get(ID_HEADER)
            .and_then(|v| v.to_str().ok())
            .filter(|v| !v.is_empty())
            .ok_or_else(|| ApiError::Unreadable(format!("{status} without {ID_HEADER}")))?;
        Ok(id.to_owned())
    }

    /// Waits for the next event, as long as it takes.
    pub async fn next(&self, id: &str) -> Result<Event, ApiError> {
        let req = Request::builder()
            .uri(format!("{}/event/next", self.base))
            .header(ID_HEADER, id)
            .body(Full::new(Bytes::new()))?;
        let (_, _, body) = self.call(req, None).await?;
        serde_json::from_slice(&body).map_err(|e| ApiError::Unreadable(e.to_string()))
    }

    /// Subscribes to the Telemetry API's platform events, delivered to `uri` at
    /// most `timeout_ms` after they happen (25 ms is the least Lambda accepts).
    /// Only a 200 is a subscription: AWS's emulator answers 202 with
    /// `Telemetry.NotSupported`, which is a refusal.
    pub async fn subscribe_telemetry(&self, id: &str, uri: &str, timeout_ms: u32) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "schemaVersion": "2025-01-29",
            "destination": { "protocol": "HTTP", "URI": uri },
            "types": ["platform"],
            "buffering": { "maxItems": 1000, "maxBytes": 262_144, "timeoutMs": timeout_ms },
        })
        .to_string();
        let req = Request::builder()
            .method(Method::PUT)
            .uri(&self.telemetry)
            .header(ID_HEADER, id)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        let (status, _, body) = self.call(req, Some(CALL_TIMEOUT)).await?;
        if status != StatusCode::OK {
            let r: Refusal = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ApiError::Refused {
                status,
                error_type: r.error_type,
                message: r.error_message,
            });
        }
        Ok(())
    }

    /// Reports why the extension cannot start (`init/error`); Lambda fails the init.
    pub async fn init_error(&self, id: &str, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.report("init/error", id, error_type, message).await
    }

    /// Reports why the extension must stop (`exit/error`); Lambda resets the environment.
    pub async fn exit_error(&self, id: &str, error_type: &str, message: &str) -> Result<(), ApiError> {
        self.report("exit/error", id, error_type, message).await
    }

    async fn report(&self, path: &str, id: &str, error_type: &str, message: &str) -> Result<(), ApiError> {
        let body = serde_json::json!({
            "errorMessage": message,
            "errorType": error_type,
            "stackTrace": [],
        })
        .to_string();
        let req = Request::builder()
            .method(Method::POST)
            .uri(format!("{}/{path}", self.base))
            .header(ID_HEADER, id)
            .header(ERROR_TYPE_HEADER, error_type)
            .header(http::header::CONTENT_TYPE, "application/json")
            .body(Full::new(Bytes::from(body)))?;
        self.call(req, Some(CALL_TIMEOUT)).await.map(|_| ())
    }

    /// Sends `req`; any status but 2xx is a [`ApiError::Refused`] with Lambda's reason.
    async fn call(
        &self,
        req: Request<Full<Bytes>>,
        timeout: Option<Duration>,
    ) -> Result<(StatusCode, http::HeaderMap, Bytes), ApiError> {
        let exchange = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| ApiError::Unreachable(e.to_string()))?;
            let (parts, body) = resp.into_parts();
            let body = body
                .collect()
                .await
                .map_err(|e| ApiError::Unreachable(e.to_string()))?
                .to_bytes();
            Ok::<_, ApiError>((parts.status, parts.headers, body))
        };
        let (status, headers, body) = match timeout {
            Some(t) => tokio::time::timeout(t, exchange)
                .await
                .map_err(|_| ApiError::Unreachable(format!("no answer within {t:?}")))??,
            None => exchange.await?,
        };
        if !status.is_success() {
            let refusal: Refusal = serde_json::from_slice(&body).unwrap_or_default();
            return Err(ApiError::Refused {
                status,
                error_type: refusal.error_type,
                message: refusal.error_message,
            });
        }
        Ok((status, headers, body))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_parse_as_lambda_sends_them() {
        let invoke: Event = serde_json::from_str(
            r#"{"eventType":"INVOKE","deadlineMs":1700000000123,"requestId":"r-1","invokedFunctionArn":"arn","tracing":{"type":"X-Amzn-Trace-Id","value":"Root=1"}}"#,
        )
        .expect("invoke");
        assert_eq!(
            invoke,
            Event::Invoke {
                deadline_ms: 1_700_000_000_123,
                request_id: "r-1".into()
            }
        );
        let shutdown: Event =
            serde_json::from_str(r#"{"eventType":"SHUTDOWN","shutdownReason":"spindown","deadlineMs":5}"#)
                .expect("shutdown");
        assert_eq!(
            shutdown,
            Event::Shutdown {
                deadline_ms: 5,
                shutdown_reason: "spindown".into()
            }
        );
        assert!(serde_json::from_str::<Event>(r#"{"eventType":"RESTORE"}"#).is_err());
    }
}
