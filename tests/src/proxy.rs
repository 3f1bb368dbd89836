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
//! gives up); a rule may hold for one region's calls only (`inject_in`).
//!
//! Quotas (`enforce`) are shaped like AWS's request-rate quotas: a token bucket per
//! Secrets Manager operation and one bucket shared by SSM's `GetParameter`,
//! `GetParameters` and `GetParametersByPath`; a call finding its bucket empty gets
//! the same `ThrottlingException` as `Fault::Throttle`. Every call that meets a bucket
//! is logged with its arrival time, forwarded or throttled, so a benchmark can ask how
//! many calls went through in any one-second window.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

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
    /// Only calls whose SigV4 credential scope names this region (`None`: any).
    region: Option<String>,
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
    /// The SigV4 access key of each call, by operation, in order.
    callers: Mutex<HashMap<String, Vec<String>>>,
    /// The access key each answered AssumeRole handed out, with its request's form.
    assumed: Mutex<HashMap<String, HashMap<String, String>>>,
    rules: Mutex<Vec<Rule>>,
    quotas: Mutex<Option<QuotaState>>,
    seen: Notify,
}

/// One request-rate quota: a sustained rate and a bucket depth (the burst a full
/// bucket admits at once).
///
/// What AWS documents (searched December 2026): Secrets Manager lists one
/// per-second quota per read API ("GetSecretValue" 10,000 per second since March
/// 2025, "BatchGetSecretValue" 100 per second, DescribeSecret 40,000) and SSM one
/// shared by GetParameter, GetParameters and GetParametersByPath (40 per second by
/// default; 3,000 for GetParameter(s) and 100 for GetParametersByPath with higher
/// throughput enabled). Neither documents a burst or a bucket depth; the services that
/// do (EC2, ECS, RDS) call theirs token buckets with a depth above the rate. So the
/// depth defaults to one second of rate ([`Quota::per_second`]): a fleet that keeps
/// within the quota in every second is never throttled, and nothing is assumed about
/// an undocumented burst allowance.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quota {
    /// Calls per second the bucket refills.
    pub rate: f64,
    /// Tokens a full bucket holds (at least 1).
    pub burst: u32,
}

impl Quota {
    /// `rate` calls per second with a bucket one second deep.
    pub fn per_second(rate: u32) -> Quota {
        Quota {
            rate: f64::from(rate),
            burst: rate.max(1),
        }
    }
}

/// The quotas the proxy enforces (see [`Quota`] for what AWS documents).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Quotas {
    /// Each Secrets Manager operation has a bucket of its own with this quota.
    pub secrets_manager: Quota,
    /// The one bucket shared by SSM's `GetParameter*` operations.
    pub ssm_get_parameters: Quota,
}

/// The name of the bucket SSM's `GetParameter*` operations share.
pub const SSM_GET_PARAMETERS_BUCKET: &str = "ssm:GetParameter*";

/// Which bucket a call with this `X-Amz-Target` draws from (`None`: not limited
/// here; AWS limits SSM's other operations separately, which no test needs).
pub fn bucket_of(target: &str) -> Option<String> {
    let (service, operation) = target.split_once('.')?;
    match service {
        "secretsmanager" => Some(format!("secretsmanager:{operation}")),
        "AmazonSSM" if matches!(operation, "GetParameter" | "GetParameters" | "GetParametersByPath") => {
            Some(SSM_GET_PARAMETERS_BUCKET.to_owned())
        }
        _ => None,
    }
}

/// A token bucket kept as the generic cell rate algorithm: instead of a fractional
/// token count it keeps the time at which the bucket will be full again (`full_at`).
/// A call is admitted when the bucket holds a whole token: when `full_at` lies less
/// than `burst - 1` emission intervals ahead of now. Integer time, so the same calls
/// at the same instants always get the same answers; the clock is the caller's.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    /// Time to refill one token.
    interval: Duration,
    /// How far `full_at` may run ahead of now and still admit a call.
    tolerance: Duration,
    full_at: Instant,
}

impl TokenBucket {
    /// A full bucket at `now`.
    pub fn new(quota: Quota, now: Instant) -> TokenBucket {
        let interval = Duration::from_secs_f64(1.0 / quota.rate.max(1e-9));
        TokenBucket {
            interval,
            tolerance: interval.saturating_mul(quota.burst.max(1) - 1),
            full_at: now,
        }
    }

    /// Takes a token at `now` if there is one.
    pub fn try_take(&mut self, now: Instant) -> bool {
        if self.full_at > now + self.tolerance {
            return false;
        }
        self.full_at = self.full_at.max(now) + self.interval;
        true
    }
}

/// Arrival times of the calls that met one bucket.
#[derive(Clone, Debug, Default)]
pub struct BucketLog {
    pub forwarded: Vec<Instant>,
    pub throttled: Vec<Instant>,
}

impl BucketLog {
    /// Forwarded calls that arrived in `[from, to)`.
    pub fn forwarded_in(&self, from: Instant, to: Instant) -> Vec<Instant> {
        within(&self.forwarded, from, to)
    }

    /// Throttled calls that arrived in `[from, to)`.
    pub fn throttled_in(&self, from: Instant, to: Instant) -> Vec<Instant> {
        within(&self.throttled, from, to)
    }

    /// Every call (forwarded or throttled) that arrived in `[from, to)`, in order:
    /// what the clients asked for, whatever the quota let through.
    pub fn offered_in(&self, from: Instant, to: Instant) -> Vec<Instant> {
        let mut all = self.forwarded_in(from, to);
        all.extend(self.throttled_in(from, to));
        all.sort();
        all
    }
}

fn within(times: &[Instant], from: Instant, to: Instant) -> Vec<Instant> {
    times.iter().copied().filter(|t| *t >= from && *t < to).collect()
}

/// The largest number of `times` (sorted) inside any half-open window `window` long.
pub fn max_in_window(times: &[Instant], window: Duration) -> usize {
    let mut best = 0;
    let mut first = 0;
    for (i, t) in times.iter().enumerate() {
        while *t >= times[first] + window {
            first += 1;
        }
        best = best.max(i + 1 - first);
    }
    best
}

struct QuotaState {
    quotas: Quotas,
    buckets: HashMap<String, TokenBucket>,
    log: BTreeMap<String, BucketLog>,
}

impl QuotaState {
    fn new(quotas: Quotas) -> QuotaState {
        QuotaState {
            quotas,
            buckets: HashMap::new(),
            log: BTreeMap::new(),
        }
    }

    /// Whether the call to `target` arriving at `now` is within its quota; logs it.
    fn admit(&mut self, target: &str, now: Instant) -> bool {
        let Some(bucket) = bucket_of(target) else {
            return true;
        };
        let quota = if bucket == SSM_GET_PARAMETERS_BUCKET {
            self.quotas.ssm_get_parameters
        } else {
            self.quotas.secrets_manager
        };
        // A bucket first met now starts full, as an account's does after a quiet spell.
        let admitted = self
            .buckets
            .entry(bucket.clone())
            .or_insert_with(|| TokenBucket::new(quota, now))
            .try_take(now);
        let log = self.log.entry(bucket).or_default();
        if admitted {
            log.forwarded.push(now);
        } else {
            log.throttled.push(now);
        }
        admitted
    }
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

    /// The access key each `operation` call was signed with, in order.
    pub fn callers(&self, operation: &str) -> Vec<String> {
        lock(&self.state.callers).get(operation).cloned().unwrap_or_default()
    }

    /// The AssumeRole request (its form: `RoleArn`, `Tags.member.N.Key`, ...) that
    /// handed out `access_key`, if one did.
    pub fn assumed_by(&self, access_key: &str) -> Option<HashMap<String, String>> {
        lock(&self.state.assumed).get(access_key).cloned()
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
            region: None,
            fault,
            remaining: times,
        });
    }

    /// Like [`FaultProxy::inject`], for calls signed for `region` only: one region of
    /// AWS failing while the others answer.
    pub fn inject_in(&self, region: &str, operation: Option<&str>, fault: Fault, times: Option<u32>) {
        lock(&self.state.rules).push(Rule {
            operation: operation.map(str::to_owned),
            region: Some(region.to_owned()),
            fault,
            remaining: times,
        });
    }

    pub fn clear(&self) {
        lock(&self.state.rules).clear();
    }

    /// Enforces `quotas` from now on, with full buckets and an empty log (replacing
    /// any quotas enforced before). Checked before the injected faults: AWS refuses a
    /// call over quota before anything else happens to it.
    pub fn enforce(&self, quotas: Quotas) {
        *lock(&self.state.quotas) = Some(QuotaState::new(quotas));
    }

    /// The calls that met each bucket so far, by bucket name (`secretsmanager:<operation>`
    /// or [`SSM_GET_PARAMETERS_BUCKET`]).
    pub fn quota_log(&self) -> BTreeMap<String, BucketLog> {
        lock(&self.state.quotas)
            .as_ref()
            .map(|q| q.log.clone())
            .unwrap_or_default()
    }

    /// Calls answered `ThrottlingException` for want of quota so far.
    pub fn throttled(&self) -> u64 {
        lock(&self.state.quotas)
            .as_ref()
            .map_or(0, |q| q.log.values().map(|l| l.throttled.len() as u64).sum())
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

fn take_fault(state: &State, operation: &str, region: &str) -> Option<Fault> {
    let mut rules = lock(&state.rules);
    let i = rules.iter().position(|r| {
        r.operation.as_deref().is_none_or(|o| o == operation)
            && r.region.as_deref().is_none_or(|g| g == region)
            && r.remaining != Some(0)
    })?;
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

/// What AWS answers a call over quota (or `Fault::Throttle`).
fn throttling() -> Response<Full<Bytes>> {
    aws_error(StatusCode::BAD_REQUEST, "ThrottlingException", "Rate exceeded")
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
    // Which quota bucket a call draws from (query-protocol calls have no target: none).
    let target = header("x-amz-target").unwrap_or("").to_owned();
    let operation = header("x-amz-target")
        .and_then(|t| t.rsplit('.').next())
        .or_else(|| form.get("Action").map(String::as_str))
        .unwrap_or("Other")
        .to_owned();
    // `Credential=KEY/DATE/REGION/SERVICE/aws4_request`
    let credential = header("authorization").and_then(|a| a.split("Credential=").nth(1));
    let region = credential.and_then(|c| c.split('/').nth(2)).unwrap_or("").to_owned();
    let access_key = credential.and_then(|c| c.split('/').next()).unwrap_or("").to_owned();
    lock(&state.callers)
        .entry(operation.clone())
        .or_default()
        .push(access_key);
    *lock(&state.counts).entry(operation.clone()).or_insert(0) += 1;
    *lock(&state.placed)
        .entry((operation.clone(), region.clone()))
        .or_insert(0) += 1;
    if !form.is_empty() {
        lock(&state.forms)
            .entry(operation.clone())
            .or_default()
            .push(form.clone());
    }
    state.seen.notify_waiters();
    let within_quota = lock(&state.quotas)
        .as_mut()
        .is_none_or(|q| q.admit(&target, Instant::now()));
    if !within_quota {
        return Ok(throttling());
    }
    match take_fault(&state, &operation, &region) {
        Some(Fault::Latency(d)) => tokio::time::sleep(d).await,
        Some(Fault::ServerError) => {
            return Ok(aws_error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "InternalServiceError",
                "injected failure",
            ));
        }
        Some(Fault::Throttle) => return Ok(throttling()),
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
            if operation == "AssumeRole" {
                let text = String::from_utf8_lossy(&body);
                let key = text
                    .split("<AccessKeyId>")
                    .nth(1)
                    .and_then(|t| t.split("</AccessKeyId>").next());
                if let Some(key) = key {
                    lock(&state.assumed).insert(key.to_owned(), form.clone());
                }
            }
            Ok(Response::from_parts(parts, Full::new(body)))
        }
        Err(_) => Ok(aws_error(
            StatusCode::BAD_GATEWAY,
            "InternalServiceError",
            "upstream unreachable",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::net::HttpClient;

    const MS: Duration = Duration::from_millis(1);

    /// Admissions of calls at the given offsets (ms) from a full bucket's start.
    fn admissions(quota: Quota, at_ms: &[u64]) -> Vec<bool> {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(quota, start);
        at_ms
            .iter()
            .map(|ms| bucket.try_take(start + MS * (*ms as u32)))
            .collect()
    }

    #[test]
    fn a_full_bucket_admits_its_depth_at_once_then_one_call_per_refill() {
        let quota = Quota::per_second(50);
        let burst: Vec<u64> = vec![0; 51];
        let got = admissions(quota, &burst);
        assert_eq!(got.iter().filter(|a| **a).count(), 50);
        assert!(!got[50], "the 51st call at once is over quota");
        // Then one token every 20 ms: not at 19 ms, yes at 20 ms, not again at 20 ms.
        let mut calls = vec![0; 50];
        calls.extend([19, 20, 20, 39, 40]);
        let got = admissions(quota, &calls);
        assert_eq!(&got[50..], [false, true, false, false, true]);
    }

    #[test]
    fn a_bucket_never_holds_more_than_its_depth() {
        // Idle for a minute, then a burst: still only 40 of 41 go through.
        let got = admissions(Quota::per_second(40), &[60_000; 41]);
        assert_eq!(got.iter().filter(|a| **a).count(), 40);
        assert!(!got[40]);
    }

    #[test]
    fn a_steady_rate_at_the_quota_is_never_throttled() {
        // 40 calls per second, evenly spaced, for ten seconds.
        let calls: Vec<u64> = (0..400).map(|i| i * 25).collect();
        assert!(admissions(Quota::per_second(40), &calls).iter().all(|a| *a));
        // Twice the rate: about half get through once the bucket is empty.
        let calls: Vec<u64> = (0..800).map(|i| i * 25 / 2).collect();
        let admitted = admissions(Quota::per_second(40), &calls).iter().filter(|a| **a).count();
        assert_eq!(admitted, 40 + 400 - 1, "the depth, then one per 25 ms for 10 s");
    }

    #[test]
    fn buckets_are_per_secrets_manager_operation_and_shared_by_ssm_reads() {
        assert_eq!(
            bucket_of("secretsmanager.GetSecretValue").as_deref(),
            Some("secretsmanager:GetSecretValue")
        );
        assert_eq!(
            bucket_of("secretsmanager.BatchGetSecretValue").as_deref(),
            Some("secretsmanager:BatchGetSecretValue")
        );
        for op in ["GetParameter", "GetParameters", "GetParametersByPath"] {
            assert_eq!(
                bucket_of(&format!("AmazonSSM.{op}")).as_deref(),
                Some(SSM_GET_PARAMETERS_BUCKET)
            );
        }
        assert_eq!(bucket_of("AmazonSSM.DescribeParameters"), None);
        assert_eq!(bucket_of(""), None);

        let start = Instant::now();
        let mut state = QuotaState::new(Quotas {
            secrets_manager: Quota::per_second(2),
            ssm_get_parameters: Quota::per_second(2),
        });
        let admitted: Vec<bool> = [
            "secretsmanager.GetSecretValue",
            "secretsmanager.GetSecretValue",
            "secretsmanager.GetSecretValue",
            "secretsmanager.BatchGetSecretValue",
            "AmazonSSM.GetParameter",
            "AmazonSSM.GetParametersByPath",
            "AmazonSSM.GetParameters",
            "AmazonSSM.DescribeParameters",
        ]
        .iter()
        .map(|t| state.admit(t, start))
        .collect();
        assert_eq!(admitted, [true, true, false, true, true, true, false, true]);
        let log = &state.log["secretsmanager:GetSecretValue"];
        assert_eq!((log.forwarded.len(), log.throttled.len()), (2, 1));
        let ssm = &state.log[SSM_GET_PARAMETERS_BUCKET];
        assert_eq!((ssm.forwarded.len(), ssm.throttled.len()), (2, 1));
        assert_eq!(ssm.offered_in(start, start + MS).len(), 3);
        assert!(!state.log.contains_key("AmazonSSM.DescribeParameters"));
    }

    #[test]
    fn the_busiest_window_is_found_whatever_its_alignment() {
        let t0 = Instant::now();
        let at = |ms: &[u32]| ms.iter().map(|m| t0 + MS * *m).collect::<Vec<_>>();
        let second = Duration::from_secs(1);
        assert_eq!(max_in_window(&[], second), 0);
        assert_eq!(max_in_window(&at(&[5]), second), 1);
        // 600..1599 holds four calls; no calendar second holds more than two.
        assert_eq!(max_in_window(&at(&[0, 600, 900, 1200, 1599, 2600]), second), 4);
        // The window is half-open: calls exactly 1 s apart are never in one window.
        assert_eq!(max_in_window(&at(&[0, 1000, 2000]), second), 1);
    }

    /// The real proxy in front of a stand-in upstream that answers `{}` to anything.
    #[tokio::test]
    async fn calls_over_quota_get_aws_throttling_errors_and_are_logged() -> Result<()> {
        let upstream = net::serve(
            TcpListener::bind("127.0.0.1:0").await?,
            service_fn(|_req: Request<Incoming>| async {
                Ok::<_, std::convert::Infallible>(Response::new(Full::new(Bytes::from_static(b"{}"))))
            }),
        )?;
        let proxy = FaultProxy::start(upstream.port()).await?;
        // Two tokens that refill only after a quarter of an hour: the test cannot race a refill.
        let scarce = Quota { rate: 0.001, burst: 2 };
        proxy.enforce(Quotas {
            secrets_manager: scarce,
            ssm_get_parameters: scarce,
        });
        let http = HttpClient::new();
        let call = |target: &'static str| {
            let http = http.clone();
            let url = proxy.endpoint();
            async move {
                http.send(
                    http::Method::POST,
                    &url,
                    &[("x-amz-target", target)],
                    Bytes::from_static(b"{}"),
                )
                .await
            }
        };
        let mut statuses = Vec::new();
        for target in [
            "secretsmanager.GetSecretValue",
            "secretsmanager.GetSecretValue",
            "secretsmanager.GetSecretValue",
            "AmazonSSM.GetParameters",
            "AmazonSSM.GetParametersByPath",
            "AmazonSSM.GetParameter",
            "AmazonSSM.DescribeParameters",
        ] {
            let r = call(target).await?;
            if r.status != 200 {
                assert_eq!(r.status, 400);
                assert_eq!(r.header("x-amzn-errortype"), Some("ThrottlingException"));
                assert_eq!(r.json()["__type"], "ThrottlingException");
                assert_eq!(r.json()["message"], "Rate exceeded");
            }
            statuses.push(r.status);
        }
        assert_eq!(statuses, [200, 200, 400, 200, 200, 400, 200]);
        assert_eq!(proxy.throttled(), 2);
        assert_eq!(proxy.count("GetSecretValue"), 3, "throttled calls are counted too");
        let log = proxy.quota_log();
        assert_eq!(log["secretsmanager:GetSecretValue"].forwarded.len(), 2);
        assert_eq!(log[SSM_GET_PARAMETERS_BUCKET].throttled.len(), 1);
        Ok(())
    }
}
