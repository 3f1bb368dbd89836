//! A scriptable custom runtime (`bootstrap`) for the emulator's tests. It prints one
//! JSON line per invocation (with `tenant`, its `Lambda-Runtime-Aws-Tenant-Id`, null
//! when absent) and answers with what it saw; first it prints `env`,
//! what its environment says about the platform. Settings:
//!
//! An invoke whose payload has `fetch_many` (a list of sidecar paths) GETs each in
//! turn and answers, per path, the status, cache outcome and the value's length and
//! first 24 characters (`SecretString`), so tests can check many values at once.
//! With `needle` in the payload each answer also says whether its whole body held
//! that text (`has_needle`), so a test can count values of a kind without reading
//! them. `sdk_many` (a list of `{"op": "GetSecretValue"|"BatchGetSecretValue"|
//! "GetParameter", "id": ..., "ids": [...]}`) makes each call through the AWS SDK
//! for Rust, signed with the function's credentials, to the sidecar's port (the SDK
//! route), answered per call as the error code or `ok`, with `has_needle`.
//!
//! `PROBE_RUNTIME_SLEEP_MS` (work this long per invoke) · `PROBE_RUNTIME_LATE_REGISTER_MS`
//! (register an internal extension this long after start, when it is too late) ·
//! `PROBE_RUNTIME_FETCH` (a sidecar path to GET per invoke, reported as status,
//! cache outcome and latency; with `PROBE_RUNTIME_SHOW_VALUE=1` the body too, for
//! tests whose values are fake; the token sent is `AWS_SESSION_TOKEN`, or in SnapStart
//! `AWS_CONTAINER_AUTHORIZATION_TOKEN`) · `PROBE_RUNTIME_RESTORE=1` (call
//! `restore/next` before the first `invocation/next`, as a runtime that supports
//! SnapStart does) · `PROBE_RUNTIME_WORKERS` (workers polling `invocation/next` at
//! once; default `AWS_LAMBDA_MAX_CONCURRENCY`, as a Managed Instances runtime does,
//! else 1).

use std::time::{Duration, Instant};

use bytes::Bytes;
use harness::emulator::epoch_ms;
use harness::net::HttpClient;
use http::Method;
use serde_json::{json, Value};

fn setting(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn say(what: &str, mut extra: Value) {
    extra["probe"] = Value::from("runtime");
    extra["what"] = Value::from(what);
    extra["epoch_ms"] = Value::from(epoch_ms());
    println!("{extra}");
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let api = setting("AWS_LAMBDA_RUNTIME_API").unwrap_or_default();
    let base = format!("http://{api}/2018-06-01/runtime");
    let http = HttpClient::new();
    say(
        "env",
        json!({
            "initialization_type": setting("AWS_LAMBDA_INITIALIZATION_TYPE"),
            "max_concurrency": setting("AWS_LAMBDA_MAX_CONCURRENCY"),
            "session_token": setting("AWS_SESSION_TOKEN").is_some(),
            "access_key_id": setting("AWS_ACCESS_KEY_ID").is_some(),
            "secret_access_key": setting("AWS_SECRET_ACCESS_KEY").is_some(),
            "container_credentials_uri": setting("AWS_CONTAINER_CREDENTIALS_FULL_URI"),
            "container_token": setting("AWS_CONTAINER_AUTHORIZATION_TOKEN").is_some(),
            "tmpdir": setting("TMPDIR"),
        }),
    );
    if let Some(delay) = setting("PROBE_RUNTIME_LATE_REGISTER_MS").and_then(|v| v.parse::<u64>().ok()) {
        let http = http.clone();
        let url = format!("http://{api}/2020-01-01/extension/register");
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(delay)).await;
            let r = http
                .send(
                    Method::POST,
                    &url,
                    &[("Lambda-Extension-Name", "late-internal")],
                    Bytes::from(r#"{"events":["INVOKE"]}"#),
                )
                .await;
            say("late_register", json!({ "status": r.map(|r| r.status).unwrap_or(0) }));
        });
    }
    if setting("PROBE_RUNTIME_RESTORE").is_some() {
        let r = http.get(&format!("{base}/restore/next"), &[]).await;
        say("restored", json!({ "status": r.map(|r| r.status).unwrap_or(0) }));
    }
    let workers = setting("PROBE_RUNTIME_WORKERS")
        .or_else(|| setting("AWS_LAMBDA_MAX_CONCURRENCY"))
        .and_then(|v| v.parse::<usize>().ok())
        .unwrap_or(1)
        .max(1);
    let mut running = tokio::task::JoinSet::new();
    for worker in 0..workers {
        running.spawn(work(worker, http.clone(), base.clone()));
    }
    // Workers end only when the API goes away; then so does the runtime.
    while running.join_next().await.is_some() {}
    std::process::exit(2);
}

/// One worker: `next`, answer, `next`, ...
async fn work(worker: usize, http: HttpClient, base: String) {
    let sleep = setting("PROBE_RUNTIME_SLEEP_MS")
        .and_then(|v| v.parse::<u64>().ok())
        .unwrap_or(0);
    loop {
        let Ok(inv) = http.get(&format!("{base}/invocation/next"), &[]).await else {
            return;
        };
        let request_id = inv.header("lambda-runtime-aws-request-id").unwrap_or("").to_owned();
        let deadline: u64 = inv
            .header("lambda-runtime-deadline-ms")
            .and_then(|d| d.parse().ok())
            .unwrap_or(0);
        // Null when the header is absent (Lambda sends it in tenant isolation mode only).
        let tenant = inv.header("lambda-runtime-aws-tenant-id").map(str::to_owned);
        say(
            "invoke",
            json!({ "request_id": request_id, "deadline_ms": deadline, "worker": worker, "tenant": tenant }),
        );
        let mut answer =
            json!({ "request_id": request_id, "deadline_ms": deadline, "worker": worker, "payload": inv.json() });
        if let Some(path) = setting("PROBE_RUNTIME_FETCH") {
            answer["fetch"] = fetch(&http, &path).await;
        }
        let needle = answer["payload"]["needle"].as_str().map(str::to_owned);
        if let Some(calls) = answer["payload"]["sdk_many"].as_array().cloned() {
            let client = sdk_client().await;
            let mut many = Vec::with_capacity(calls.len());
            for call in &calls {
                many.push(sdk_call(&client, call, needle.as_deref()).await);
            }
            answer["sdk_many"] = Value::from(many);
        }
        if let Some(paths) = answer["payload"]["fetch_many"].as_array().cloned() {
            let mut many = Vec::with_capacity(paths.len());
            for path in paths.iter().filter_map(Value::as_str) {
                many.push(fetch_value(&http, path, needle.as_deref()).await);
            }
            answer["many"] = Value::from(many);
        }
        if answer["many"].is_array() || answer["sdk_many"].is_array() {
            answer["payload"] = Value::Null;
        }
        if sleep > 0 {
            tokio::time::sleep(Duration::from_millis(sleep)).await;
        }
        let _ = http
            .send(
                Method::POST,
                &format!("{base}/invocation/{request_id}/response"),
                &[],
                Bytes::from(answer.to_string()),
            )
            .await;
    }
}

/// GETs `path` and says what came back: status, cache outcome, and the
/// `SecretString`'s length and first characters (test values, not secrets).
async fn fetch_value(http: &HttpClient, path: &str, needle: Option<&str>) -> Value {
    let (status, cache, body, has_needle) = match get(http, path).await {
        Ok(r) => (
            r.status,
            r.header("x-secrets-sidecar-cache").map(str::to_owned),
            r.json(),
            needle.is_some_and(|n| r.text().contains(n)),
        ),
        Err(e) => return json!({ "error": e.to_string() }),
    };
    let value = body["SecretString"].as_str().unwrap_or("");
    let head: String = value.chars().take(24).collect();
    json!({ "status": status, "cache": cache, "len": value.len(), "head": head, "has_needle": has_needle })
}

/// An AWS SDK client for the sidecar's port, credentials and region from the
/// environment, as a function's would be.
async fn sdk_client() -> (aws_sdk_secretsmanager::Client, aws_sdk_ssm::Client) {
    let port = setting("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|| "2773".into());
    let config = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .endpoint_url(format!("http://127.0.0.1:{port}"))
        .http_client(aws_smithy_http_client::Builder::new().build_http())
        .load()
        .await;
    (
        aws_sdk_secretsmanager::Client::new(&config),
        aws_sdk_ssm::Client::new(&config),
    )
}

/// One SDK-route call: `ok`, or the error code, and whether a returned value held the needle.
async fn sdk_call(
    (sm, ssm): &(aws_sdk_secretsmanager::Client, aws_sdk_ssm::Client),
    call: &Value,
    needle: Option<&str>,
) -> Value {
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    let holds = |text: Option<&str>| needle.is_some_and(|n| text.is_some_and(|t| t.contains(n)));
    let id = call["id"].as_str().unwrap_or("").to_owned();
    let (code, has_needle) = match call["op"].as_str().unwrap_or("") {
        "GetSecretValue" => match sm.get_secret_value().secret_id(id).send().await {
            Ok(out) => ("ok".to_owned(), holds(out.secret_string())),
            Err(e) => (e.code().unwrap_or("no code").to_owned(), false),
        },
        "BatchGetSecretValue" => {
            let ids: Vec<String> = call["ids"]
                .as_array()
                .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
                .unwrap_or_default();
            match sm.batch_get_secret_value().set_secret_id_list(Some(ids)).send().await {
                Ok(out) => {
                    let leaked = out.secret_values().iter().any(|v| holds(v.secret_string()));
                    let errors: Vec<&str> = out.errors().iter().filter_map(|e| e.error_code()).collect();
                    (format!("ok errors={}", errors.join("|")), leaked)
                }
                Err(e) => (e.code().unwrap_or("no code").to_owned(), false),
            }
        }
        "GetParameter" => match ssm.get_parameter().name(id).with_decryption(true).send().await {
            Ok(out) => ("ok".to_owned(), holds(out.parameter().and_then(|p| p.value()))),
            Err(e) => (e.code().unwrap_or("no code").to_owned(), false),
        },
        other => (format!("unknown op {other}"), false),
    };
    json!({ "code": code, "has_needle": has_needle })
}

/// GETs `path` from the sidecar with the environment's token.
async fn get(http: &HttpClient, path: &str) -> anyhow::Result<harness::net::Response> {
    let token = setting("AWS_SESSION_TOKEN")
        .or_else(|| setting("AWS_CONTAINER_AUTHORIZATION_TOKEN"))
        .unwrap_or_default();
    let port = setting("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT").unwrap_or_else(|| "2773".into());
    http.get(
        &format!("http://127.0.0.1:{port}{path}"),
        &[("X-Aws-Parameters-Secrets-Token", &token)],
    )
    .await
}

/// GETs `path`, reported as status, cache outcome and latency.
async fn fetch(http: &HttpClient, path: &str) -> Value {
    let started = Instant::now();
    let r = get(http, path).await;
    let micros = started.elapsed().as_micros() as u64;
    match r {
        Ok(r) => {
            let mut f = json!({ "status": r.status, "cache": r.header("x-secrets-sidecar-cache"), "micros": micros });
            if setting("PROBE_RUNTIME_SHOW_VALUE").is_some() {
                f["body"] = Value::from(r.text());
            }
            f
        }
        Err(e) => json!({ "error": e.to_string(), "micros": micros }),
    }
}
