//! Section 9 — The SDK's own protocol: what the article's second approach (an AWS SDK
//! `GetSecretValue` on every invoke) costs straight to AWS and through the sidecar, with
//! the code unchanged and only `AWS_ENDPOINT_URL_SECRETS_MANAGER` telling the two
//! apart. For boto3 and the AWS SDK for JavaScript v3, a small script
//! (`tests/fixtures/sdk/bench_sdk.{py,mjs}`) makes N calls in one process with one
//! client, as a warm function does, timing each. "AWS" is moto behind the fault proxy
//! with 20 ms added to every call (an in-region round trip); the proxy counts the
//! calls that reach it. The baseline (direct) and the sidecar run in the same run, one
//! after the other, each sidecar run on a fresh (cold) sidecar.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use harness::moto::Moto;
use harness::proxy::{Fault, FaultProxy};
use harness::sdk_function::{ensure_node_modules, node, sha256_hex};
use harness::sidecar::SidecarBuilder;
use harness::venv;
use serde_json::Value;

use crate::report::Table;
use crate::Tools;

const RTT: Duration = Duration::from_millis(20);
const SECRET: &str = "bench/sdk";
/// What the scripts sign with (the sidecar verifies SigV4 with the same set).
const ACCESS_KEY_ID: &str = "testing";
const SECRET_ACCESS_KEY: &str = "testing";

#[derive(Clone, Copy, PartialEq)]
enum Sdk {
    Boto3,
    JavaScript,
}

#[derive(Clone, Copy, PartialEq)]
enum Route {
    Direct,
    Sidecar,
}

/// One script run's figures.
struct Run {
    sdk: String,
    calls: u64,
    ok: u64,
    p50_ms: f64,
    p99_ms: f64,
    upstream: u64,
}

/// The script's command line for `sdk`.
fn command(sdk: Sdk, calls: usize) -> Result<tokio::process::Command> {
    let root = venv::repo_root();
    let fixtures = root.join("tests/fixtures/sdk");
    let (program, script): (PathBuf, PathBuf) = match sdk {
        Sdk::Boto3 => (venv::tool("python"), fixtures.join("bench_sdk.py")),
        Sdk::JavaScript => (node()?, fixtures.join("bench_sdk.mjs")),
    };
    let mut cmd = tokio::process::Command::new(program);
    cmd.arg(script).arg(SECRET).arg(calls.to_string()).current_dir(root);
    Ok(cmd)
}

/// Runs `sdk`'s script against `endpoint`: `calls` calls, bounded in time.
async fn script(sdk: Sdk, endpoint: &str, calls: usize, digest: &str) -> Result<Value> {
    let mut cmd = command(sdk, calls)?;
    // Only what a function would have: credentials, a region, the endpoint.
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .env("HOME", "/nonexistent")
        .env("AWS_REGION", "us-east-1")
        .env("AWS_DEFAULT_REGION", "us-east-1")
        .env("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
        .env("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint)
        .env("EXPECT_SHA256", digest)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    // Generous: 20 ms per direct call, slow interpreters on a busy machine.
    let limit = Duration::from_secs(60) + Duration::from_millis(200) * calls as u32;
    let out = tokio::time::timeout(limit, cmd.output())
        .await
        .map_err(|_| anyhow!("the script did not finish within {limit:?}"))??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let line = stdout.lines().rev().find(|l| l.starts_with('{'));
    match (out.status.success(), line) {
        (true, Some(line)) => serde_json::from_str(line).context("the script's statistics"),
        _ => {
            let stderr = String::from_utf8_lossy(&out.stderr);
            let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
            bail!("the script failed ({}): {}", out.status, tail.join(" / "))
        }
    }
}

async fn measure(sdk: Sdk, route: Route, tools: &Tools, proxy: &FaultProxy, calls: usize, digest: &str) -> Result<Run> {
    // A fresh sidecar per run: each starts with an empty cache, as a new environment does.
    let sidecar = match route {
        Route::Direct => None,
        Route::Sidecar => Some(
            SidecarBuilder::new(&tools.sidecar)
                .var("AWS_ACCESS_KEY_ID", ACCESS_KEY_ID)
                .var("AWS_SECRET_ACCESS_KEY", SECRET_ACCESS_KEY)
                .var("SECRETS_SIDECAR_UPSTREAM_ENDPOINT", &proxy.endpoint())
                .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info")
                .spawn()
                .await?,
        ),
    };
    let endpoint = match &sidecar {
        Some(s) => format!("http://localhost:{}", s.port),
        None => proxy.endpoint(),
    };
    let before = proxy.count("GetSecretValue");
    let stats = script(sdk, &endpoint, calls, digest).await?;
    let upstream = proxy.count("GetSecretValue") - before;
    let ok = stats["ok"].as_u64().unwrap_or(0);
    if ok != calls as u64 {
        bail!(
            "{} of {calls} calls answered the secret (errors {}, wrong values {})",
            ok,
            stats["errors"],
            stats["mismatches"]
        );
    }
    Ok(Run {
        sdk: stats["sdk"].as_str().unwrap_or("?").to_owned(),
        calls: calls as u64,
        ok,
        p50_ms: stats["p50_ms"].as_f64().unwrap_or(f64::NAN),
        p99_ms: stats["p99_ms"].as_f64().unwrap_or(f64::NAN),
        upstream,
    })
}

pub async fn run(tools: &Tools, smoke: bool) -> Result<String> {
    tokio::task::spawn_blocking(ensure_node_modules).await??;
    let calls = if smoke { 20 } else { 1000 };
    let moto = Moto::start().await?;
    // A realistic secret: a JSON document of about 1 KiB.
    let value =
        serde_json::json!({ "username": "app", "password": "p".repeat(900), "host": "db.internal", "port": 5432 })
            .to_string();
    moto.create_secret(SECRET, &value).await?;
    let digest = sha256_hex(value.as_bytes())?;
    let proxy = FaultProxy::start(moto.port).await?;
    proxy.inject(None, Fault::Latency(RTT), None);

    let mut table = Table::new(&[
        "SDK",
        "GetSecretValue per invoke",
        "calls",
        "p50 per call",
        "p99 per call",
        "upstream calls per 1,000 invokes",
    ]);
    let mut summary = Vec::new();
    for sdk in [Sdk::Boto3, Sdk::JavaScript] {
        let direct = measure(sdk, Route::Direct, tools, &proxy, calls, &digest).await?;
        let cached = measure(sdk, Route::Sidecar, tools, &proxy, calls, &digest).await?;
        for (label, r) in [
            ("straight to AWS (20 ms round trip)", &direct),
            ("through the sidecar", &cached),
        ] {
            table.row(vec![
                format!("`{}`", r.sdk),
                label.to_owned(),
                format!("{} ({} right)", r.calls, r.ok),
                format!("{:.2} ms", r.p50_ms),
                format!("{:.2} ms", r.p99_ms),
                format!("{:.1}", r.upstream as f64 * 1000.0 / r.calls as f64),
            ]);
        }
        summary.push(format!(
            "{}: p50 {:.1}× lower through the sidecar ({:.2} → {:.2} ms), upstream calls {} → {}",
            direct.sdk,
            direct.p50_ms / cached.p50_ms,
            direct.p50_ms,
            cached.p50_ms,
            direct.upstream,
            cached.upstream
        ));
    }
    Ok(format!(
        "{}\n{}.\n\nEach row is one process making {calls} `GetSecretValue` calls with one client, one after the other, as a warm function calling the SDK on every invoke does (`tests/fixtures/sdk/bench_sdk.py`, `bench_sdk.mjs`); the code is the same in both rows of an SDK, only `AWS_ENDPOINT_URL_SECRETS_MANAGER` differs: the fault proxy in front of moto with {} ms added to every call (\"AWS\"), or `http://localhost:<port>` of a fresh `secrets-sidecar` ({} build, standalone, no prefetch, default TTL 300 s) whose upstream is that same proxy. Straight to AWS a call takes the added round trip plus moto's own time; through the sidecar, the SDK's own work (signing, HTTP, parsing) plus the sidecar's SigV4 check and cache hit. Every answer is checked against the planted value's SHA-256. Upstream calls are the proxy's count of `GetSecretValue`. Through the sidecar the count is one per cold environment and then one per TTL whatever the invoke rate, so per 1,000 invokes it falls as traffic grows; straight to AWS it is always 1,000. Run it alone with `bench --only 9`.\n",
        table.render(),
        summary.join("; "),
        RTT.as_millis(),
        if smoke { "debug" } else { "release" }
    ))
}
