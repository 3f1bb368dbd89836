//! A scriptable external extension for the emulator's contract tests. It registers
//! under its file name, prints one JSON line per thing that happens, and misbehaves
//! on request (all settings are environment variables):
//!
//! `PROBE_EVENTS` (INVOKE,SHUTDOWN) · `PROBE_REGISTER_DELAY_MS` · `PROBE_INVOKE_HOLD_MS`
//! (wait before returning to `next`) · `PROBE_TICK_MS` (print a tick this often) ·
//! `PROBE_IGNORE_SHUTDOWN=1` · `PROBE_CRASH_ON_INVOKE=1` · `PROBE_INIT_ERROR=1` ·
//! `PROBE_EXIT_ERROR_ON_INVOKE=1`.

use std::time::Duration;

use bytes::Bytes;
use harness::emulator::epoch_ms;
use harness::net::HttpClient;
use http::Method;
use serde_json::{json, Value};

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

async fn idle_forever() -> ! {
    loop {
        tokio::time::sleep(Duration::from_secs(3600)).await;
    }
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
    let events: Vec<String> = setting("PROBE_EVENTS")
        .unwrap_or_else(|| "INVOKE,SHUTDOWN".into())
        .split(',')
        .map(str::to_owned)
        .collect();

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
    let body = Bytes::from(json!({ "events": events }).to_string());
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
    let id = reg.header("lambda-extension-identifier").unwrap_or("").to_owned();
    say(&name, "register", json!({ "status": reg.status, "body": reg.json() }));
    if reg.status != 200 {
        // Refused: stay alive but out of the way, as a stubborn process would.
        idle_forever().await;
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
                    json!({ "request_id": event["requestId"], "deadline_ms": event["deadlineMs"] }),
                );
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
                std::process::exit(0);
            }
            _ => {
                say(&name, "unexpected", json!({ "status": ev.status, "body": event }));
                std::process::exit(2);
            }
        }
    }
}
