//! A fault-injecting HTTP proxy between the sidecar and moto.
//!
//! Every request is counted by operation (the part of `X-Amz-Target` after the dot:
//! `GetSecretValue`, `BatchGetSecretValue`, `GetParameters`, …; for STS's query
//! protocol the form's `Action`, e.g. `AssumeRole`) and by the region its SigV4
//! credential scope names, before any fault is applied, so the counts are the calls
//! the sidecar made and where. Query-protocol forms are kept for inspection. Rules, applied in order,
//! each for one operation or all, for a number of calls or until cleared:
//! added latency, HTTP 500, `ThrottlingException` (HTTP 400 with AWS's JSON error),
//! any other AWS error, a dropped connection, or a hang (no answer until the client
//! gives up).

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use tokio::net::TcpListener;
use tokio::sync::Notify;

use crate::net::{self, Server};

#[derive(Clone, Debug, PartialEq)]
pub enum Fault {
    Latency(Duration),
    /// HTTP 500 `InternalServiceError`.
    ServerError,
    /// HTTP 400 `ThrottlingException`.
    Throttle,
    /// The connection is closed without an answer.
    Drop,
    /// No answer, ever (until the client times out).
    Hang,
    /// Any AWS JSON error: HTTP status and `__type` (e.g. 400, `AccessDeniedException`).
    Error(u16, &'static str),
}

#[derive(Clone, Debug)]
struct Rule {
    operation: Option<String>,
    fault: Fault,
    remaining: Option<u32>,
}

#[derive(Default)]
struct State {
    counts: Mutex<HashMap<String, u64>>,
    /// By (operation, region).
    placed: Mutex<HashMap<(String, String), u64>>,
    /// The form fields of each query-protocol request, by operation.
    forms: Mutex<HashMap<String, Vec<HashMap<String, String>>>>,
    rules: Mutex<Vec<Rule>>,
    seen: Notify,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// The proxy; it stops when dropped (connections held by a `Hang` included).
pub struct FaultProxy {
    pub port: u16,
    state: Arc<State>,
    _server: Server,
}

impl FaultProxy {
    /// Starts a proxy forwarding to `upstream_port` on 127.0.0.1.
    pub async fn start(upstream_port: u16) -> Result<FaultProxy> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let state = Arc::new(State::default());
        let upstream = SocketAddr::from(([127, 0, 0, 1], upstream_port));
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new()).build_http();
        let service = {
            let state = state.clone();
            // `Fault::Drop` answers `Err`, and hyper closes the connection unanswered.
            service_fn(move |req| forward(state.clone(), client.clone(), upstream, req))
        };
        let server = net::serve(listener, service)?;
        Ok(FaultProxy {
            port: server.port(),
            state,
            _server: server,
        })
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Calls seen for `operation` (e.g. "GetSecretValue").
    pub fn count(&self, operation: &str) -> u64 {
        lock(&self.state.counts).get(operation).copied().unwrap_or(0)
    }

    /// Calls seen for `operation` signed for `region`.
    pub fn count_in(&self, operation: &str, region: &str) -> u64 {
        lock(&self.state.placed)
            .get(&(operation.to_owned(), region.to_owned()))
            .copied()
            .unwrap_or(0)
    }

    /// The form fields of every `operation` call made with the query protocol (STS).
    pub fn forms(&self, operation: &str) -> Vec<HashMap<String, String>> {
        lock(&self.state.forms).get(operation).cloned().unwrap_or_default()
    }

    pub fn total(&self) -> u64 {
        lock(&self.state.counts).values().sum()
    }

    pub fn counts(&self) -> HashMap<String, u64> {
        lock(&self.state.counts).clone()
    }

    pub fn reset_counts(&self) {
        lock(&self.state.counts).clear();
        lock(&self.state.placed).clear();
    }

    /// Applies `fault` to the next `times` calls of `operation` (`None`: every operation;
    /// `times` `None`: until cleared).
    pub fn inject(&self, operation: Option<&str>, fault: Fault, times: Option<u32>) {
        lock(&self.state.rules).push(Rule {
            operation: operation.map(str::to_owned),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        lock(&self.state.rules).clear();
    }

    /// Waits until `operation` has been seen at least `n` times, at most `timeout`.
    pub async fn wait_for_count(&self, operation: &str, n: u64, timeout: Duration) -> Result<u64> {
        let wait = async {
            loop {
                let notified = self.state.seen.notified();
                let c = self.count(operation);
                if c >= n {
                    return c;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, wait).await.map_err(|_| {
            anyhow::anyhow!(
                "{operation}: {} calls, not {n}, within {timeout:?}",
                self.count(operation)
            )
        })
    }
}

fn take_fault(state: &State, operation: &str) -> Option<Fault> {
    let mut rules = lock(&state.rules);
    let i = rules
        .iter()
        .position(|r| r.operation.as_deref().is_none_or(|o| o == operation) && r.remaining != Some(0))?;
    let rule = &mut rules[i];
    if let Some(n) = rule.remaining.as_mut() {
        *n -= 1;
    }
    Some(rule.fault.clone())
}

fn aws_error(status: StatusCode, kind: &str, message: &str) -> Response<Full<Bytes>> {
    let body = serde_json::json!({ "__type": kind, "message": message }).to_string();
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        "content-type",
        http::HeaderValue::from_static("application/x-amz-json-1.1"),
    );
    if let Ok(v) = http::HeaderValue::from_str(kind) {
        resp.headers_mut().insert("x-amzn-errortype", v);
    }
    resp
}

async fn forward(
    state: Arc<State>,
    client: Client<HttpConnector, Full<Bytes>>,
    upstream: SocketAddr,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (parts, body) = req.into_parts();
    let body = match body.collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => return Err(std::io::Error::other(e)),
    };
    let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok());
    let form: HashMap<String, String> = match header("x-amz-target") {
        Some(_) => HashMap::new(),
        None => net::query_pairs(&String::from_utf8_lossy(&body), true)
            .into_iter()
            .collect(),
    };
    let operation = header("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .or_else(|| form.get("Action").map(String::as_str))
        .unwrap_or("Other")
        .to_owned();
    // `Credential=KEY/DATE/REGION/SERVICE/aws4_request`
    let region = header("authorization")
        .and_then(|a| a.split("Credential=").nth(1))
        .and_then(|c| c.split('/').nth(2))
        .unwrap_or("")
        .to_owned();
    *lock(&state.counts).entry(operation.clone()).or_insert(0) += 1;
    *lock(&state.placed).entry((operation.clone(), region)).or_insert(0) += 1;
    if !form.is_empty() {
        lock(&state.forms).entry(operation.clone()).or_default().push(form);
    }
    state.seen.notify_waiters();
    match take_fault(&state, &operation) {
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::ServerError) => {
            return Ok(aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceError",
                "injected failure",
            ));
        }
        Some(Fault::Throttle) => {
            return Ok(aws_error(
                StatusCode::BAD_REQUEST,
                "ThrottlingException",
                "Rate exceeded",
            ));
        }
        Some(Fault::Drop) => return Err(std::io::Error::other("connection dropped by the fault proxy")),
        Some(Fault::Hang) => std::future::pending::<()>().await,
        Some(Fault::Error(status, kind)) => {
            let status = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_REQUEST);
            return Ok(aws_error(status, kind, "injected error"));
        }
        None => {}
    }
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut out = Request::builder()
        .method(parts.method)
        .uri(format!("http://{upstream}{path}"));
    for (k, v) in &parts.headers {
        if k != http::header::HOST {
            out = out.header(k, v);
        }
    }
    let out = out.body(Full::new(body)).map_err(std::io::Error::other)?;
    match client.request(out).await {
        Ok(resp) => {
            let (parts, body) = resp.into_parts();
            let body = body.collect().await.map_err(std::io::Error::other)?.to_bytes();
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(_) => Ok(aws_error(
            StatusCode::BAD_GATEWAY,
            "InternalServiceError",
            "upstream unreachable",
        )),
    }
}
