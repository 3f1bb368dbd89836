//! A scriptable external extension for the emulator's contract tests. It registers
//! under its file name, prints one JSON line per thing that happens (after
//! registering, `env`: what its environment says about the platform, and with
//! container credentials what their endpoint answered), and misbehaves on request (all settings are
//! environment variables):
//!
//! `PROBE_EVENTS` (INVOKE,SHUTDOWN) · `PROBE_RETRY_EVENTS` (register again with these
//! after a refusal, as an extension must on Managed Instances) ·
//! `PROBE_REGISTER_DELAY_MS` · `PROBE_INVOKE_HOLD_MS` (wait before returning to
//! `next`) · `PROBE_TICK_MS` (print a tick this often) · `PROBE_IGNORE_SHUTDOWN=1` ·
//! `PROBE_NEXT_AFTER_SHUTDOWN=1` (call `next` again after SHUTDOWN, then exit 0 half
//! a second before the deadline while that call still waits) · `PROBE_CRASH_ON_INVOKE=1` ·
//! `PROBE_INIT_ERROR=1` · `PROBE_EXIT_ERROR_ON_INVOKE=1` · `PROBE_EXIT_AFTER_MS`
//! (exit 0 this long after registering) · `PROBE_FETCH_URL` with `PROBE_FETCH_AT`
//! (`init`, the default, or the first `invoke`) and `PROBE_HOLD` (`memory`, the
//! default: keep the body for good; `tmp`: write it base64-encoded to
//! `$TMPDIR/<name>-held`): fetch a value as an extension that caches it would. The
//! probe never prints what it fetched, only its size.
//!
//! Its `invoke` line has `tenant_id`: the INVOKE event's `tenantId`, null when absent.
//!
//! Telemetry API: `PROBE_TELEMETRY` (types, e.g. `platform`) subscribes a listener
//! of its own, printing `telemetry_subscribe` (status, body) and one `telemetry` line
//! per batch received (the events' types and records) · `PROBE_TELEMETRY_AT` (`init`,
//! the default, or the first `invoke`, when it is too late) ·
//! `PROBE_TELEMETRY_TIMEOUT_MS` (the buffering timeout, default 25) ·
//! `PROBE_TELEMETRY_WAIT=1` (after each INVOKE, wait up to 2 s for the invoke's
//! `platform.runtimeDone` before `next`, as a telemetry extension flushing does).

use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use harness::emulator::epoch_ms;
use harness::net::{HttpClient, Server};
use http::Method;
use http_body_util::{BodyExt, Full};
use serde_json::{json, Value};
use tokio::sync::Notify;

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn millis(name: &str) -> u64 {
    setting(name).and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn say(name: &str, what: &str, mut extra: Value) {
    extra["probe"] = Value::from(name);
    extra["what"] = Value::from(what);
    extra["epoch_ms"] = Value::from(epoch_ms());
    println!("{extra}");
}

/// What the probe's telemetry listener received, and a bell rung at each batch.
#[derive(Clone, Default)]
struct Received {
    events: Arc<Mutex<Vec<Value>>>,
    bell: Arc<Notify>,
}

impl Received {
    fn has(&self, kind: &str, request_id: &Value) -> bool {
        let events = self.events.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        events
            .iter()
            .any(|e| e["type"] == kind && e["record"]["requestId"] == *request_id)
    }

    /// Waits (at most `limit`) for the event `kind` of the invoke `request_id`.
    async fn wait_for(&self, kind: &str, request_id: &Value, limit: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + limit;
        loop {
            let rung = self.bell.notified();
            tokio::pin!(rung);
            rung.as_mut().enable();
            if self.has(kind, request_id) {
                return true;
            }
            if tokio::time::timeout_at(deadline, rung).await.is_err() {
                return false;
            }
        }
    }
}

/// Starts the telemetry listener: every batch is printed and kept.
async fn telemetry_listener(name: &str, received: &Received) -> Option<Server> {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.ok()?;
    let (name, received) = (name.to_owned(), received.clone());
    let service = hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
        let (name, received) = (name.clone(), received.clone());
        async move {
            let body = req
                .into_body()
                .collect()
                .await
                .map(|b| b.to_bytes())
                .unwrap_or_default();
            let batch: Vec<Value> = serde_json::from_slice(&body).unwrap_or_default();
            let types: Vec<Value> = batch.iter().map(|e| e["type"].clone()).collect();
            let records: Vec<Value> = batch.iter().map(|e| e["record"].clone()).collect();
            say(&name, "telemetry", json!({ "types": types, "records": records }));
            received
                .events
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend(batch);
            received.bell.notify_waiters();
            Ok::<_, Infallible>(http::Response::new(Full::new(Bytes::new())))
        }
    });
    harness::net::serve(listener, service).ok()
}

/// Subscribes the listener at `port` to the Telemetry API for `types`.
async fn subscribe_telemetry(name: &str, http: &HttpClient, api: &str, id: &str, types: &str, port: u16) {
    let timeout_ms: u64 = setting("PROBE_TELEMETRY_TIMEOUT_MS")
        .and_then(|v| v.parse().ok())
        .unwrap_or(25);
    let types: Vec<&str> = types.split(',').filter(|t| !t.is_empty()).collect();
    let body = json!({
        "schemaVersion": "2022-12-13",
        "destination": {"protocol": "HTTP", "URI": format!("http://127.0.0.1:{port}/telemetry")},
        "types": types,
        "buffering": {"timeoutMs": timeout_ms},
    });
    let r = http
        .send(
            Method::PUT,
            &format!("http://{api}/2022-07-01/telemetry"),
            &[("Lambda-Extension-Identifier", id)],
            Bytes::from(body.to_string()),
        )
        .await;
    let line = match r {
        Ok(r) => json!({ "status": r.status, "body": r.json() }),
        Err(e) => json!({ "error": e.to_string() }),
    };
    say(name, "telemetry_subscribe", line);
}

async fn idle_forever() -> ! {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
}

/// What the environment says about the platform (presence only for credentials).
async fn report_env(name: &str, http: &HttpClient) {
    let var = |k: &str| std::env::var(k).ok();
    let uri = var("AWS_CONTAINER_CREDENTIALS_FULL_URI");
    say(
        name,
        "env",
        json!({
            "initialization_type": var("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "max_concurrency": var("AWS_LAMBDA_MAX_CONCURRENCY"),
            "session_token": var("AWS_SESSION_TOKEN").is_some(),
            "access_key_id": var("AWS_ACCESS_KEY_ID").is_some(),
            "secret_access_key": var("AWS_SECRET_ACCESS_KEY").is_some(),
            "container_credentials_uri": uri,
            "container_token": var("AWS_CONTAINER_AUTHORIZATION_TOKEN").is_some(),
            "tmpdir": var("TMPDIR"),
        }),
    );
    let (Some(uri), Some(token)) = (uri, var("AWS_CONTAINER_AUTHORIZATION_TOKEN")) else {
        return;
    };
    let r = http.get(&uri, &[("Authorization", &token)]).await;
    let line = match r {
        Ok(r) => {
            let c = r.json();
            json!({
                "status": r.status,
                "access_key_id": c["AccessKeyId"],
                "expiration": c["Expiration"],
                "token": c["Token"].is_string(),
            })
        }
        Err(e) => json!({ "error": e.to_string() }),
    };
    say(name, "credentials", line);
}

/// Fetches `PROBE_FETCH_URL` and keeps it as `PROBE_HOLD` says (see the header).
async fn fetch_and_hold(name: &str, http: &HttpClient, held: &mut Vec<Vec<u8>>) {
    let Some(url) = setting("PROBE_FETCH_URL") else { return };
    let body = match http.get(&url, &[]).await {
        Ok(r) if r.status == 200 => r.body,
        Ok(r) => {
            say(name, "fetch_failed", json!({ "status": r.status }));
            return;
        }
        Err(e) => {
            say(name, "fetch_failed", json!({ "error": e.to_string() }));
            return;
        }
    };
    let place = if setting("PROBE_HOLD").as_deref() == Some("tmp") {
        let path = std::env::temp_dir().join(format!("{name}-held"));
        let encoded = base64::engine::general_purpose::STANDARD.encode(&body);
        if let Err(e) = std::fs::write(&path, encoded) {
            say(name, "fetch_failed", json!({ "error": e.to_string() }));
            return;
        }
        path.display().to_string()
    } else {
        held.push(body.to_vec());
        "memory".to_owned()
    };
    say(name, "fetched", json!({ "bytes": body.len(), "held": place }));
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let name = std::env::args()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "probe".into());
    let api = setting("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    let base = format!("http://{api}/2020-01-01/extension");
    let http = HttpClient::new();
    let events =
        |list: String| -> Vec<String> { list.split(',').filter(|e| !e.is_empty()).map(str::to_owned).collect() };
    let mut held: Vec<Vec<u8>> = Vec::new();

    if let Some(tick) = setting("PROBE_TICK_MS").and_then(|v| v.parse::<u64>().ok()) {
        let name = name.clone();
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(Duration::from_millis(tick)).await;
                say(&name, "tick", json!({}));
            }
        });
    }
    tokio::time::sleep(Duration::from_millis(millis("PROBE_REGISTER_DELAY_MS"))).await;
    let mut id = None;
    let attempts = [
        Some(setting("PROBE_EVENTS").unwrap_or_else(|| "INVOKE,SHUTDOWN".into())),
        setting("PROBE_RETRY_EVENTS"),
    ];
    for list in attempts.into_iter().flatten() {
        let body = Bytes::from(json!({ "events": events(list) }).to_string());
        let reg = http
            .send(
                Method::POST,
                &format!("{base}/register"),
                &[
                    ("Lambda-Extension-Name", &name),
                    ("Lambda-Extension-Accept-Feature", "accountId"),
                ],
                body,
            )
            .await;
        let Ok(reg) = reg else {
            say(&name, "register_failed", json!({}));
            std::process::exit(2);
        };
        say(&name, "register", json!({ "status": reg.status, "body": reg.json() }));
        if reg.status == 200 {
            id = reg.header("lambda-extension-identifier").map(str::to_owned);
            break;
        }
    }
    let Some(id) = id else {
        // Refused: stay alive but out of the way, as a stubborn process would.
        idle_forever().await;
    };
    // After registering, so spawn → registered stays a bare baseline (bench).
    report_env(&name, &http).await;
    if let Some(after) = setting("PROBE_EXIT_AFTER_MS").and_then(|v| v.parse::<u64>().ok()) {
        let name = name.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(after)).await;
            say(&name, "exit", json!({ "code": 0 }));
            std::process::exit(0);
        });
    }
    let received = Received::default();
    let telemetry = setting("PROBE_TELEMETRY");
    let telemetry_server = match &telemetry {
        Some(_) => telemetry_listener(&name, &received).await,
        None => None,
    };
    let telemetry_port = telemetry_server.as_ref().map(Server::port).unwrap_or(0);
    let mut subscribe_at_invoke = setting("PROBE_TELEMETRY_AT").as_deref() == Some("invoke");
    if let (Some(types), false) = (&telemetry, subscribe_at_invoke) {
        subscribe_telemetry(&name, &http, &api, &id, types, telemetry_port).await;
    }
    let fetch_at_invoke = setting("PROBE_FETCH_AT").as_deref() == Some("invoke");
    if !fetch_at_invoke {
        fetch_and_hold(&name, &http, &mut held).await;
    }
    if setting("PROBE_INIT_ERROR").is_some() {
        let _ = http
            .send(
                Method::POST,
                &format!("{base}/init/error"),
                &[
                    ("Lambda-Extension-Identifier", &id),
                    ("Lambda-Extension-Function-Error-Type", "Extension.ProbeFailed"),
                ],
                Bytes::from(
                    r#"{"errorMessage":"probe asked to fail","errorType":"Extension.ProbeFailed","stackTrace":[]}"#,
                ),
            )
            .await;
        say(&name, "init_error_sent", json!({}));
        std::process::exit(1);
    }
    loop {
        let Ok(ev) = http
            .get(&format!("{base}/event/next"), &[("Lambda-Extension-Identifier", &id)])
            .await
        else {
            say(&name, "next_failed", json!({}));
            std::process::exit(2);
        };
        let event = ev.json();
        match event["eventType"].as_str() {
            Some("INVOKE") => {
                say(
                    &name,
                    "invoke",
                    json!({
                        "request_id": event["requestId"],
                        "deadline_ms": event["deadlineMs"],
                        "tenant_id": event.get("tenantId"),
                    }),
                );
                if let (Some(types), true) = (&telemetry, subscribe_at_invoke) {
                    subscribe_at_invoke = false;
                    subscribe_telemetry(&name, &http, &api, &id, types, telemetry_port).await;
                }
                if setting("PROBE_CRASH_ON_INVOKE").is_some() {
                    std::process::exit(3);
                }
                if setting("PROBE_EXIT_ERROR_ON_INVOKE").is_some() {
                    let _ = http
                        .send(
                            Method::POST,
                            &format!("{base}/exit/error"),
                            &[
                                ("Lambda-Extension-Identifier", &id),
                                ("Lambda-Extension-Function-Error-Type", "Extension.ProbeExit"),
                            ],
                            Bytes::new(),
                        )
                        .await;
                    std::process::exit(1);
                }
                if fetch_at_invoke && held.is_empty() {
                    fetch_and_hold(&name, &http, &mut held).await;
                }
                if setting("PROBE_TELEMETRY_WAIT").is_some() {
                    let done = received
                        .wait_for("platform.runtimeDone", &event["requestId"], Duration::from_secs(2))
                        .await;
                    say(
                        &name,
                        "telemetry_wait",
                        json!({ "request_id": event["requestId"], "runtime_done": done }),
                    );
                }
                tokio::time::sleep(Duration::from_millis(millis("PROBE_INVOKE_HOLD_MS"))).await;
                say(&name, "invoke_done", json!({ "request_id": event["requestId"] }));
            }
            Some("SHUTDOWN") => {
                say(
                    &name,
                    "shutdown",
                    json!({ "reason": event["shutdownReason"], "deadline_ms": event["deadlineMs"] }),
                );
                if setting("PROBE_IGNORE_SHUTDOWN").is_some() {
                    idle_forever().await;
                }
                if setting("PROBE_NEXT_AFTER_SHUTDOWN").is_some() {
                    next_after_shutdown(&name, &http, &base, &id, event["deadlineMs"].as_u64()).await;
                }
                let held_bytes: usize = std::hint::black_box(&held).iter().map(Vec::len).sum();
                say(&name, "exit", json!({ "code": 0, "held_bytes": held_bytes }));
                std::process::exit(0);
            }
            _ => {
                say(&name, "unexpected", json!({ "status": ev.status, "body": event }));
                std::process::exit(2);
            }
        }
    }
}

/// Breaks the contract on purpose: `next` after SHUTDOWN. Lambda never answers it;
/// the probe gives up half a second before the deadline and then exits 0, as an
/// extension whose main returned with the call pending would.
async fn next_after_shutdown(name: &str, http: &HttpClient, base: &str, id: &str, deadline_ms: Option<u64>) {
    let left = deadline_ms.unwrap_or(0).saturating_sub(epoch_ms()).saturating_sub(500);
    say(name, "next_after_shutdown", json!({ "waiting_ms": left }));
    let url = format!("{base}/event/next");
    let headers = [("Lambda-Extension-Identifier", id)];
    match tokio::time::timeout(Duration::from_millis(left), http.get(&url, &headers)).await {
        Ok(r) => say(
            name,
            "next_after_shutdown_answered",
            json!({ "status": r.map(|r| r.status).unwrap_or(0) }),
        ),
        Err(_) => say(name, "next_after_shutdown_unanswered", json!({})),
    }
}
