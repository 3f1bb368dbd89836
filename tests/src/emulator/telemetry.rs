//! The Telemetry API (`PUT /2022-07-01/telemetry`): an extension subscribes during
//! init; the platform's events then reach its HTTP listener in buffered batches.
//!
//! Subscribing (AWS's emulator: `rapi/handler/runtimelogs.go`, the subscription
//! schema `telemetry/schema/telemetry-subscription-schema.json`, `rapid/handlers.go`):
//! - `Lambda-Extension-Identifier` names a registered extension, else 403
//!   `Extension.UnknownExtensionIdentifier`;
//! - once init is over, 403 `Telemetry.SubscriptionClosed` ("Telemetry API
//!   subscription is closed already");
//! - the body: `schemaVersion` (`2022-07-01`, `2022-12-13` or `2025-01-29`), `types`
//!   (at least one of `platform`, `function`, `extension`), `destination`
//!   (`{"protocol":"HTTP","URI":…}`; a TCP destination is not modelled), `buffering`
//!   (`maxItems` 1000–10000, default 10000; `maxBytes` 262144–1048576, default
//!   262144; `timeoutMs` 25–30000, default 1000); anything else is 400 `ValidationError`;
//! - success is 200 with the body `"OK"`; subscribing again replaces the subscription.
//!
//! With `FunctionConfig::telemetry_stub` every PUT gets what the classic emulator
//! answers (`rapi/handler/runtimelogs_stub.go`): 202 `Telemetry.NotSupported`.
//!
//! Delivery: each subscriber has a task that buffers its events and POSTs a JSON
//! array of `{"time", "type", "record"}` once `timeoutMs` passed since the batch's
//! first event, or at `maxItems`/`maxBytes`. Events are emitted under the state lock
//! ([`emit`]), never delivered there: `platform.start` is emitted before the INVOKE
//! is released but arrives at least `timeoutMs` later, as in Lambda. A frozen
//! environment gets nothing until it is thawed. A batch the listener does not take
//! (3 tries, 1 s each) is dropped ([`Trace::TelemetryDropped`]); no invoke waits for
//! delivery. Subscriptions end with their environment (`State::reset` drops them;
//! what was buffered is still sent once).
//!
//! Records (`interop/events_api.go`): `platform.start` {requestId, version},
//! `platform.runtimeDone` {requestId, status}, `platform.report` {requestId, status,
//! metrics {durationMs, billedDurationMs, memorySizeMB, maxMemoryUsedMB}}; each with
//! `tenantId` in tenant isolation mode only (`omitempty`).

use std::sync::{Arc, Weak};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};
use serde_json::{json, Value};
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::api::{header, refuse, reply, Resp};
use super::config::{FunctionConfig, Quirks};
use super::credentials::civil_from_days;
use super::state::{epoch_ms, Shared, State, Trace};
use crate::net::HttpClient;

pub const PATH: &str = "/2022-07-01/telemetry";

const SCHEMA_VERSIONS: [&str; 3] = ["2022-07-01", "2022-12-13", "2025-01-29"];
const TYPES: [&str; 3] = ["platform", "function", "extension"];
const TRIES: u32 = 3;
const TRY_LIMIT: Duration = Duration::from_secs(1);

/// When a subscriber's batch goes out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Buffering {
    pub max_items: usize,
    pub max_bytes: usize,
    pub timeout: Duration,
}

/// One extension's subscription: where its events go.
pub struct Subscriber {
    pub name: String,
    pub types: Vec<String>,
    events: mpsc::UnboundedSender<Value>,
}

/// A valid subscription body.
#[derive(Debug, PartialEq)]
struct Request {
    types: Vec<String>,
    uri: String,
    buffering: Buffering,
}

fn integer(v: &Value, key: &str, min: u64, max: u64, default: u64) -> Result<u64, String> {
    match v.get(key) {
        None | Some(Value::Null) => Ok(default),
        Some(n) => match n.as_u64() {
            Some(n) if (min..=max).contains(&n) => Ok(n),
            _ => Err(format!("buffering.{key} must be an integer from {min} to {max}")),
        },
    }
}

/// Validates a subscription body (the schema of the header).
fn parse(body: &Bytes) -> Result<Request, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("Invalid JSON: {e}"))?;
    let version = v["schemaVersion"].as_str().unwrap_or_default();
    if !SCHEMA_VERSIONS.contains(&version) {
        return Err(format!("schemaVersion must be one of {SCHEMA_VERSIONS:?}"));
    }
    let types: Vec<String> = v["types"]
        .as_array()
        .ok_or("types is required")?
        .iter()
        .map(|t| t.as_str().filter(|t| TYPES.contains(t)).map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(|| format!("types must be among {TYPES:?}"))?;
    if types.is_empty() {
        return Err("types must name at least one type".into());
    }
    let destination = &v["destination"];
    if destination["protocol"] != "HTTP" {
        return Err("Invalid destination: protocol must be HTTP".into());
    }
    let uri = destination["URI"].as_str().unwrap_or_default();
    if !uri.starts_with("http://") {
        return Err("Invalid destination: URI must be an http:// URI".into());
    }
    let b = &v["buffering"];
    if !b.is_null() && !b.is_object() {
        return Err("buffering must be an object".into());
    }
    let buffering = Buffering {
        max_items: integer(b, "maxItems", 1000, 10_000, 10_000)? as usize,
        max_bytes: integer(b, "maxBytes", 262_144, 1_048_576, 262_144)? as usize,
        timeout: Duration::from_millis(integer(b, "timeoutMs", 25, 30_000, 1000)?),
    };
    Ok(Request {
        types,
        uri: uri.to_owned(),
        buffering,
    })
}

/// `PUT /2022-07-01/telemetry`.
pub(super) fn subscribe(shared: &Arc<Shared>, cfg: &FunctionConfig, headers: &HeaderMap, body: &Bytes) -> Resp {
    if cfg.telemetry_stub {
        return refuse(
            StatusCode::ACCEPTED,
            "Telemetry.NotSupported",
            "Telemetry API is not supported",
        );
    }
    let id = header(headers, "lambda-extension-identifier").unwrap_or_default();
    let parsed = parse(body);
    shared.update(|s| {
        let refused = |s: &mut State, name: &str, status: StatusCode, kind: &str, why: &str| {
            s.record(Trace::TelemetryRefused {
                name: name.to_owned(),
                status: status.as_u16(),
                error_type: kind.to_owned(),
            });
            refuse(status, kind, why)
        };
        let Some(name) = s.extensions.iter().find(|e| e.id == id).map(|e| e.name.clone()) else {
            let why = format!("Unknown extension {id}");
            return refused(
                s,
                &id,
                StatusCode::FORBIDDEN,
                "Extension.UnknownExtensionIdentifier",
                &why,
            );
        };
        if s.telemetry_closed && !cfg.quirks.telemetry_open_after_init {
            return refused(
                s,
                &name,
                StatusCode::FORBIDDEN,
                "Telemetry.SubscriptionClosed",
                "Telemetry API subscription is closed already",
            );
        }
        let request = match parsed {
            Ok(r) => r,
            Err(why) => return refused(s, &name, StatusCode::BAD_REQUEST, "ValidationError", &why),
        };
        let (tx, rx) = mpsc::unbounded_channel();
        tokio::spawn(deliver(
            Arc::downgrade(shared),
            name.clone(),
            request.uri,
            request.buffering,
            rx,
        ));
        s.subscribers.retain(|sub| sub.name != name);
        s.subscribers.push(Subscriber {
            name: name.clone(),
            types: request.types.clone(),
            events: tx,
        });
        s.record(Trace::TelemetrySubscribed {
            name,
            types: request.types,
        });
        reply(StatusCode::OK, Value::from("OK"))
    })
}

/// An epoch time in milliseconds as RFC 3339 in UTC with milliseconds.
pub fn rfc3339_ms(ms: u64) -> String {
    let secs = (ms / 1000) as i64;
    let (y, m, d) = civil_from_days(secs.div_euclid(86_400));
    let rem = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        ms % 1000
    )
}

/// `record` with the environment's `tenantId` when it has one (Lambda omits an
/// empty one; the quirks drop it, or keep an empty one).
pub(super) fn with_tenant(s: &State, quirks: &Quirks, mut record: Value) -> Value {
    match &s.tenant {
        Some(_) if quirks.telemetry_drops_tenant => {}
        Some(t) => record["tenantId"] = Value::from(t.clone()),
        None if quirks.tenant_id_not_omitted => record["tenantId"] = Value::from(""),
        None => {}
    }
    record
}

/// Hands the event `kind` (`platform.start`, …) to every subscriber of its type
/// (`platform`); delivery happens later, in each subscriber's task.
pub(super) fn emit(s: &State, kind: &str, record: Value) {
    let category = kind.split('.').next().unwrap_or_default();
    let mut event = None;
    for sub in s
        .subscribers
        .iter()
        .filter(|sub| sub.types.iter().any(|t| t == category))
    {
        let event =
            event.get_or_insert_with(|| json!({"time": rfc3339_ms(epoch_ms()), "type": kind, "record": record}));
        let _ = sub.events.send(event.clone());
    }
}

/// One subscriber's delivery: buffer, then POST each batch when it is due (see the
/// header); ends when the subscription does, after sending what it still holds.
async fn deliver(
    shared: Weak<Shared>,
    name: String,
    uri: String,
    buffering: Buffering,
    mut events: mpsc::UnboundedReceiver<Value>,
) {
    let http = HttpClient::new();
    let mut batch: Vec<Value> = Vec::new();
    let mut bytes = 0usize;
    let mut due: Option<Instant> = None;
    loop {
        // None: the batch is due.
        let next = match due {
            Some(at) => tokio::select! {
                e = events.recv() => Some(e),
                () = tokio::time::sleep_until(at) => None,
            },
            None => Some(events.recv().await),
        };
        let full = match next {
            Some(Some(event)) => {
                bytes += event.to_string().len();
                if batch.is_empty() {
                    due = Some(Instant::now() + buffering.timeout);
                }
                batch.push(event);
                batch.len() >= buffering.max_items || bytes >= buffering.max_bytes
            }
            Some(None) => {
                if !batch.is_empty() {
                    post(&http, &shared, &name, &uri, std::mem::take(&mut batch)).await;
                }
                return;
            }
            None => true,
        };
        if full {
            post(&http, &shared, &name, &uri, std::mem::take(&mut batch)).await;
            bytes = 0;
            due = None;
        }
    }
}

/// POSTs one batch, once the environment is thawed, with bounded retries.
async fn post(http: &HttpClient, shared: &Weak<Shared>, name: &str, uri: &str, batch: Vec<Value>) {
    let field = |e: &Value, f: &str| e[f].as_str().unwrap_or_default().to_owned();
    let types: Vec<String> = batch.iter().map(|e| field(e, "type")).collect();
    let request_ids: Vec<String> = batch.iter().map(|e| field(&e["record"], "requestId")).collect();
    let count = batch.len();
    let body = Bytes::from(Value::Array(batch).to_string());
    let mut why = String::new();
    for attempt in 1..=TRIES {
        // A frozen listener could not answer: wait for the thaw (bounded, and not
        // past the emulator's end).
        if let Some(shared) = shared.upgrade() {
            let thawed = Instant::now() + Duration::from_secs(60);
            let _ = shared.wait_until(thawed, |s| !s.frozen).await;
        }
        let sent = http.send(Method::POST, uri, &[("content-type", "application/json")], body.clone());
        match tokio::time::timeout(TRY_LIMIT, sent).await {
            Ok(Ok(r)) if r.status < 300 => {
                if let Some(shared) = shared.upgrade() {
                    shared.update(|s| {
                        s.record(Trace::TelemetryDelivered {
                            name: name.to_owned(),
                            types,
                            request_ids,
                        })
                    });
                }
                return;
            }
            Ok(Ok(r)) => why = format!("HTTP {}", r.status),
            Ok(Err(e)) => why = e.to_string(),
            Err(_) => why = format!("no answer within {TRY_LIMIT:?}"),
        }
        tokio::time::sleep(Duration::from_millis(100 * u64::from(attempt))).await;
    }
    if let Some(shared) = shared.upgrade() {
        shared.update(|s| {
            s.record(Trace::TelemetryDropped {
                name: name.to_owned(),
                count,
                why,
            })
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn body(v: Value) -> Bytes {
        Bytes::from(v.to_string())
    }

    #[test]
    fn subscriptions_follow_the_schema() {
        let ok = parse(&body(json!({
            "schemaVersion": "2022-12-13",
            "destination": {"protocol": "HTTP", "URI": "http://127.0.0.1:1/t"},
            "types": ["platform"],
        })))
        .expect("valid");
        assert_eq!(
            ok.buffering,
            Buffering {
                max_items: 10_000,
                max_bytes: 262_144,
                timeout: Duration::from_millis(1000)
            }
        );
        for bad in [
            json!({"schemaVersion": "2020-01-01", "destination": {"protocol": "HTTP", "URI": "http://x"}, "types": ["platform"]}),
            json!({"schemaVersion": "2022-07-01", "destination": {"protocol": "HTTP", "URI": "http://x"}, "types": []}),
            json!({"schemaVersion": "2022-07-01", "destination": {"protocol": "HTTP", "URI": "http://x"}, "types": ["logs"]}),
            json!({"schemaVersion": "2022-07-01", "destination": {"protocol": "TCP", "port": 9}, "types": ["platform"]}),
            json!({"schemaVersion": "2022-07-01", "destination": {"protocol": "HTTP", "URI": "http://x"}, "types": ["platform"], "buffering": {"timeoutMs": 10}}),
            json!({"schemaVersion": "2022-07-01", "destination": {"protocol": "HTTP", "URI": "http://x"}, "types": ["platform"], "buffering": {"maxItems": 10}}),
        ] {
            assert!(parse(&body(bad.clone())).is_err(), "{bad}");
        }
        assert!(parse(&Bytes::from_static(b"{")).is_err());
    }

    #[test]
    fn times_have_milliseconds() {
        assert_eq!(rfc3339_ms(1_709_210_096_007), "2024-02-29T12:34:56.007Z");
    }
}
