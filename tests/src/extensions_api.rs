//! A scripted stand-in for Lambda's Extensions API, for lifecycle tests of one
//! extension: it records registrations and error reports, and answers each
//! `event/next` with the next event the test pushes (blocking until there is one,
//! as Lambda does).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Result};
use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use serde_json::{json, Value};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, Mutex as AsyncMutex, Notify};

use crate::net::{self, Server};

/// One request the extension made.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub path: String,
    pub headers: HeaderMap,
    pub body: Value,
    pub at: tokio::time::Instant,
}

#[derive(Default)]
struct State {
    requests: Mutex<Vec<Recorded>>,
    changed: Notify,
}

/// The scripted API; it stops when dropped.
pub struct MockExtensionsApi {
    pub port: u16,
    state: Arc<State>,
    events: mpsc::UnboundedSender<Value>,
    _server: Server,
}

pub const EXTENSION_ID: &str = "3f5c7c1e-0000-4000-8000-000000000001";

pub use crate::emulator::epoch_ms;

impl MockExtensionsApi {
    pub async fn start() -> Result<MockExtensionsApi> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let state = Arc::new(State::default());
        let (tx, rx) = mpsc::unbounded_channel();
        // One queue for every `next`: each takes the next event pushed, in order.
        let rx = Arc::new(AsyncMutex::new(rx));
        let service = {
            let state = state.clone();
            service_fn(move |req| handle(state.clone(), rx.clone(), req))
        };
        let server = net::serve(listener, service)?;
        Ok(MockExtensionsApi {
            port: server.port(),
            state,
            events: tx,
            _server: server,
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API` for the extension: `host:port`, no scheme.
    pub fn address(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn requests(&self, path_suffix: &str) -> Vec<Recorded> {
        self.state
            .requests
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .iter()
            .filter(|r| r.path.ends_with(path_suffix))
            .cloned()
            .collect()
    }

    /// Waits until at least `n` requests to a path ending in `path_suffix` arrived.
    pub async fn wait_for(&self, path_suffix: &str, n: usize, timeout: Duration) -> Result<Vec<Recorded>> {
        let wait = async {
            loop {
                let notified = self.state.changed.notified();
                let got = self.requests(path_suffix);
                if got.len() >= n {
                    return got;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            anyhow!(
                "{} x {path_suffix}: only {} within {timeout:?}",
                n,
                self.requests(path_suffix).len()
            )
        })
    }

    pub fn push_invoke(&self, request_id: &str, timeout: Duration) {
        let _ = self.events.send(json!({
            "eventType": "INVOKE",
            "deadlineMs": epoch_ms() + timeout.as_millis() as u64,
            "requestId": request_id,
            "invokedFunctionArn": "arn:aws:lambda:us-east-1:123456789012:function:test",
            "tracing": {"type": "X-Amzn-Trace-Id", "value": "Root=1-00000000-000000000000000000000000"}
        }));
    }

    pub fn push_shutdown(&self, reason: &str) {
        let _ = self.events.send(json!({
            "eventType": "SHUTDOWN",
            "shutdownReason": reason,
            "deadlineMs": epoch_ms() + 2000
        }));
    }
}

async fn handle(
    state: Arc<State>,
    events: Arc<AsyncMutex<mpsc::UnboundedReceiver<Value>>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    state
        .requests
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
        .push(Recorded {
            path: path.clone(),
            headers,
            body,
            at: tokio::time::Instant::now(),
        });
    state.changed.notify_waiters();
    let (status, extra, body) = match path.as_str() {
        "/2020-01-01/extension/register" => (
            StatusCode::OK,
            Some(("lambda-extension-identifier", EXTENSION_ID)),
            json!({"functionName": "test", "functionVersion": "$LATEST", "handler": "bootstrap"}),
        ),
        "/2020-01-01/extension/event/next" => {
            let event = events.lock().await.recv().await;
            match event {
                Some(e) => (StatusCode::OK, Some(("lambda-extension-event-identifier", "ev")), e),
                None => (StatusCode::INTERNAL_SERVER_ERROR, None, json!({})),
            }
        }
        "/2020-01-01/extension/init/error" | "/2020-01-01/extension/exit/error" => {
            (StatusCode::ACCEPTED, None, json!({"status": "OK"}))
        }
        _ => (StatusCode::NOT_FOUND, None, json!({"errorMessage": "unknown path"})),
    };
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    if let Some((k, v)) = extra {
        if let Ok(v) = http::HeaderValue::from_str(v) {
            resp.headers_mut().insert(k, v);
        }
    }
    Ok(resp)
}
