//! The Runtime API (`/2018-06-01`) and the Extensions API (`/2020-01-01`), served
//! on one loopback port as in Lambda (`AWS_LAMBDA_RUNTIME_API` = `host:port`).
//!
//! `next` requests are parked as waiters in the shared state and answered when the
//! emulator delivers an event; they carry no timeout, as in Lambda. A `next` from an
//! extension that already got SHUTDOWN is a contract violation: recorded as
//! [`Trace::NextAfterShutdown`] and parked for good, as Lambda's own emulator does.
//!
//! Per mode: SnapStart adds `restore/next` and `restore/error` (`snapstart.rs`) and the
//! container credentials endpoint (`credentials.rs`); Managed Instances refuse any
//! event but SHUTDOWN at registration (403 `Extension.InvalidEventType`; the extension
//! is not registered and may register again) and let several runtime workers wait in
//! `next` at once.
//!
//! Every mode serves the Telemetry API (`PUT /2022-07-01/telemetry`, `telemetry.rs`).
//! In tenant isolation mode the runtime's `next` carries `Lambda-Runtime-Aws-Tenant-Id`;
//! the extensions' INVOKE event never names a tenant.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Response, StatusCode};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use serde_json::{json, Value};
use tokio::sync::oneshot;

use super::config::FunctionConfig;
use super::state::{Delivery, Extension, Phase, RuntimeAnswer, Shared, State, Trace};
use super::{credentials, snapstart, telemetry};

pub(super) type Resp = Response<Full<Bytes>>;

pub(super) fn reply(status: StatusCode, body: Value) -> Resp {
    let mut r = Response::new(Full::new(Bytes::from(body.to_string())));
    *r.status_mut() = status;
    r.headers_mut()
        .insert("content-type", http::HeaderValue::from_static("application/json"));
    r
}

pub(super) fn refuse(status: StatusCode, error_type: &str, message: &str) -> Resp {
    reply(status, json!({ "errorMessage": message, "errorType": error_type }))
}

pub(super) fn header(h: &HeaderMap, name: &str) -> Option<String> {
    h.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned)
}

pub async fn handle(shared: Arc<Shared>, cfg: Arc<FunctionConfig>, req: Request<Incoming>) -> Result<Resp, Infallible> {
    let method = req.method().clone();
    let path = req.uri().path().to_owned();
    let headers = req.headers().clone();
    let body = req
        .into_body()
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    let resp = match (method, path.as_str()) {
        (Method::POST, "/2020-01-01/extension/register") => register(&shared, &cfg, &headers, &body),
        (Method::GET, "/2020-01-01/extension/event/next") => extension_next(&shared, &cfg, &headers).await,
        (Method::POST, "/2020-01-01/extension/init/error") | (Method::POST, "/2020-01-01/extension/exit/error") => {
            extension_error(&shared, &cfg, &headers, &path, &body)
        }
        (Method::GET, "/2018-06-01/runtime/invocation/next") => runtime_next(&shared, &cfg).await,
        (Method::PUT, telemetry::PATH) => telemetry::subscribe(&shared, &cfg, &headers, &body),
        (Method::GET, "/2018-06-01/runtime/restore/next") => snapstart::restore_next(&shared, &cfg).await,
        (Method::GET, credentials::PATH) if cfg.mode == super::Mode::SnapStart => {
            credentials::serve(&shared, &cfg, &headers)
        }
        (Method::POST, "/2018-06-01/runtime/restore/error") if cfg.mode == super::Mode::SnapStart => {
            runtime_error(&shared, &headers, &path)
        }
        (Method::POST, "/2018-06-01/runtime/init/error") => runtime_error(&shared, &headers, &path),
        (Method::POST, p) if p.starts_with("/2018-06-01/runtime/invocation/") => {
            invocation_result(&shared, &cfg, &headers, p, body)
        }
        _ => refuse(StatusCode::NOT_FOUND, "InvalidRequest", "unknown path"),
    };
    Ok(resp)
}

/// `init/error` (and SnapStart's `restore/error`): the runtime failed; so does the environment.
fn runtime_error(shared: &Shared, headers: &HeaderMap, path: &str) -> Resp {
    let error_type = header(headers, "lambda-runtime-function-error-type").unwrap_or_default();
    shared.update(|s| {
        s.record(Trace::ErrorReported {
            source: "runtime".into(),
            path: path.to_owned(),
            error_type: error_type.clone(),
        });
        let stage = if path.ends_with("/restore/error") {
            "restore"
        } else {
            "init"
        };
        s.fail(format!("runtime {stage} error: {error_type}"));
    });
    reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
}

/// Managed Instances: the refusal of an event other than SHUTDOWN (AWS's emulator,
/// `rapi/handler/agentregister.go`): external extensions may subscribe to SHUTDOWN
/// only, internal ones to nothing.
fn managed_refusal(cfg: &FunctionConfig, external: bool, events: &[String]) -> Option<String> {
    if !cfg.mode.is_managed() || cfg.quirks.managed_accepts_invoke {
        return None;
    }
    if !external {
        return (!events.is_empty()).then(|| "No events allowed for internal extensions".to_owned());
    }
    events
        .iter()
        .find(|e| *e != "SHUTDOWN")
        .map(|e| format!("{e}: ErrorInvalidEventType"))
}

fn register(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap, body: &Bytes) -> Resp {
    let Some(name) = header(headers, "lambda-extension-name") else {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "Lambda-Extension-Name is required",
        );
    };
    let events: Vec<String> = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["events"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .filter_map(|e| e.as_str().map(str::to_owned))
        .collect();
    if events.iter().any(|e| e != "INVOKE" && e != "SHUTDOWN") {
        return refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequest",
            "events must be INVOKE and/or SHUTDOWN",
        );
    }
    let account = header(headers, "lambda-extension-accept-feature").is_some_and(|f| f.contains("accountId"));
    shared.update(|s| {
        let external = s.started_extensions.contains(&name);
        if let Some(why) = managed_refusal(cfg, external, &events) {
            // Not registered and not counted as refused: it may register again.
            s.record(Trace::RegistrationRefused {
                name: name.clone(),
                status: StatusCode::FORBIDDEN.as_u16(),
                why: why.clone(),
            });
            return refuse(StatusCode::FORBIDDEN, "Extension.InvalidEventType", &why);
        }
        let refused = |s: &mut State, status: StatusCode, kind: &str, why: &str| {
            s.record(Trace::RegistrationRefused {
                name: name.clone(),
                status: status.as_u16(),
                why: why.to_owned(),
            });
            s.refused.push(name.clone());
            refuse(status, kind, why)
        };
        if s.registration_closed && !cfg.quirks.late_registration {
            return refused(
                s,
                StatusCode::FORBIDDEN,
                "Extension.InvalidState",
                "registration is closed: the runtime has started polling",
            );
        }
        if !matches!(s.phase, Phase::Initializing | Phase::Ready) && !cfg.quirks.late_registration {
            return refused(
                s,
                StatusCode::FORBIDDEN,
                "Extension.InvalidState",
                "the environment is not initialising",
            );
        }
        if s.extensions.len() >= cfg.quirks.max_extensions {
            return refused(
                s,
                StatusCode::BAD_REQUEST,
                "Extension.TooManyExtensions",
                "at most 10 extensions may register",
            );
        }
        if s.extensions.iter().any(|e| e.name == name) {
            return refused(
                s,
                StatusCode::BAD_REQUEST,
                "Extension.AlreadyRegistered",
                "this name is already registered",
            );
        }
        if !external && events.iter().any(|e| e == "SHUTDOWN") {
            return refused(
                s,
                StatusCode::BAD_REQUEST,
                "Extension.InvalidEvent",
                "internal extensions cannot register for SHUTDOWN",
            );
        }
        let id = uuid::Uuid::new_v4().to_string();
        s.extensions.push(Extension {
            id: id.clone(),
            name: name.clone(),
            external,
            events: events.clone(),
            waiter: None,
            nexts: 0,
            pending_shutdown: None,
            shutdown_delivered: false,
            limbo: None,
        });
        s.record(Trace::Registered {
            name: name.clone(),
            external,
            events: events.clone(),
        });
        let mut body = json!({
            "functionName": cfg.name,
            "functionVersion": "$LATEST",
            "handler": cfg.handler,
        });
        if account {
            body["accountId"] = Value::from(cfg.account_id.clone());
        }
        let mut r = reply(StatusCode::OK, body);
        if let Ok(v) = http::HeaderValue::from_str(&id) {
            r.headers_mut().insert("lambda-extension-identifier", v);
        }
        r
    })
}

async fn extension_next(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap) -> Resp {
    let Some(id) = header(headers, "lambda-extension-identifier") else {
        return refuse(
            StatusCode::FORBIDDEN,
            "Extension.MissingExtensionIdentifier",
            "Lambda-Extension-Identifier is required",
        );
    };
    let (tx, rx) = oneshot::channel();
    // None: unknown id; Some(Some(event)): a SHUTDOWN owed to a busy extension.
    let parked = shared.update(|s| {
        let ext = s.extension_mut(&id)?;
        ext.nexts += 1;
        let name = ext.name.clone();
        let owed = ext.pending_shutdown.take();
        let violation = ext.shutdown_delivered && !cfg.quirks.ignore_next_after_shutdown;
        if owed.is_some() {
            ext.shutdown_delivered = true;
        } else if violation {
            // Nothing will answer it: the extension should have exited.
            ext.limbo = Some(tx);
        } else {
            ext.waiter = Some(tx);
        }
        s.record(Trace::ExtensionNext { name: name.clone() });
        if violation {
            s.record(Trace::NextAfterShutdown { name });
        }
        Some(owed)
    });
    match parked {
        None => refuse(
            StatusCode::FORBIDDEN,
            "Extension.UnknownExtensionIdentifier",
            "unknown extension",
        ),
        Some(Some(event)) => event_reply(event),
        Some(None) => match rx.await {
            Ok(Delivery::Event(event)) => event_reply(event),
            _ => refuse(StatusCode::INTERNAL_SERVER_ERROR, "Extension.Gone", "environment ended"),
        },
    }
}

fn event_reply(event: Value) -> Resp {
    let mut r = reply(StatusCode::OK, event);
    let id = uuid::Uuid::new_v4().to_string();
    if let Ok(v) = http::HeaderValue::from_str(&id) {
        r.headers_mut().insert("lambda-extension-event-identifier", v);
    }
    r
}

fn extension_error(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap, path: &str, body: &Bytes) -> Resp {
    let id = header(headers, "lambda-extension-identifier").unwrap_or_default();
    let error_type = header(headers, "lambda-extension-function-error-type").unwrap_or_default();
    let message = serde_json::from_slice::<Value>(body)
        .ok()
        .and_then(|v| v["errorMessage"].as_str().map(str::to_owned))
        .map(|m| format!(": {m}"))
        .unwrap_or_default();
    shared.update(|s| {
        let name = s
            .extensions
            .iter()
            .find(|e| e.id == id)
            .map(|e| e.name.clone())
            .unwrap_or_else(|| "unknown".into());
        s.record(Trace::ErrorReported {
            source: name.clone(),
            path: path.to_owned(),
            error_type: error_type.clone(),
        });
        if cfg.quirks.ignore_extension_failures {
            s.forget_extension(&name);
        } else {
            s.fail(format!("extension {name} reported {error_type} at {path}{message}"));
        }
    });
    reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
}

/// `Lambda-Runtime-Aws-Tenant-Id`: the invocation's tenant, only when there is one
/// (AWS's emulator, `rapi/rendering/rendering.go`, sets it only when not empty).
fn tenant_header(cfg: &FunctionConfig, inv: &super::state::Invocation) -> Option<String> {
    match &inv.tenant {
        Some(_) if cfg.quirks.tenant_header_missing => None,
        Some(t) => Some(t.clone()),
        None if cfg.quirks.tenant_id_not_omitted => Some(String::new()),
        None => None,
    }
}

async fn runtime_next(shared: &Shared, cfg: &FunctionConfig) -> Resp {
    let (tx, rx) = oneshot::channel();
    shared.update(|s| {
        s.runtime.nexts += 1;
        s.runtime.waiters.push(tx);
        s.registration_closed = true;
        s.record(Trace::RuntimeNext);
    });
    match rx.await {
        Ok(Delivery::Invocation(inv)) => {
            let mut r = Response::new(Full::new(inv.payload.clone()));
            let h = r.headers_mut();
            if let Some(Ok(v)) = tenant_header(cfg, &inv).map(|t| http::HeaderValue::from_str(&t)) {
                h.insert("lambda-runtime-aws-tenant-id", v);
            }
            for (k, v) in [
                ("lambda-runtime-aws-request-id", inv.request_id.clone()),
                ("lambda-runtime-deadline-ms", inv.deadline_ms.to_string()),
                ("lambda-runtime-invoked-function-arn", inv.function_arn.clone()),
                ("lambda-runtime-trace-id", inv.trace_id.clone()),
                ("content-type", "application/json".to_owned()),
            ] {
                if let Ok(v) = http::HeaderValue::from_str(&v) {
                    h.insert(k, v);
                }
            }
            r
        }
        _ => refuse(StatusCode::INTERNAL_SERVER_ERROR, "Runtime.Gone", "environment ended"),
    }
}

fn invocation_result(shared: &Shared, cfg: &FunctionConfig, headers: &HeaderMap, path: &str, body: Bytes) -> Resp {
    let rest = path.trim_start_matches("/2018-06-01/runtime/invocation/");
    let Some((request_id, kind)) = rest.split_once('/') else {
        return refuse(StatusCode::NOT_FOUND, "InvalidRequest", "unknown path");
    };
    let status = if kind == "response" { "success" } else { "error" };
    let answer = match kind {
        "response" => RuntimeAnswer::Response(body),
        "error" => RuntimeAnswer::Error {
            error_type: header(headers, "lambda-runtime-function-error-type").unwrap_or_else(|| "Unhandled".into()),
            body,
        },
        _ => return refuse(StatusCode::NOT_FOUND, "InvalidRequest", "unknown path"),
    };
    shared.update(|s| match s.inflight.remove(request_id) {
        Some(tx) => {
            s.record(Trace::RuntimeAnswered {
                request_id: request_id.to_owned(),
            });
            let record = json!({"requestId": request_id, "status": status});
            telemetry::emit(
                s,
                "platform.runtimeDone",
                telemetry::with_tenant(s, &cfg.quirks, record),
            );
            s.statuses.insert(request_id.to_owned(), status);
            let _ = tx.send(answer);
            reply(StatusCode::ACCEPTED, json!({"status": "OK"}))
        }
        None => refuse(
            StatusCode::BAD_REQUEST,
            "InvalidRequestID",
            "no such invocation in flight",
        ),
    })
}
