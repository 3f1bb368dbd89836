//! Secrets hygiene (reliability suite 5): the full end-to-end scenario at debug and at
//! trace level with planted values of every kind (a string secret, a JSON field, a
//! binary secret, SecureStrings), including error paths; every byte of every log line
//! and every error body is scanned for the values, plain and base64: none may appear.

use base64::Engine;
use harness::emulator::{Outcome, ShutdownReason};
use harness::net::HttpClient;
use harness::world::{Keys, World, WorldConfig};

type R = anyhow::Result<()>;

fn planted() -> Keys {
    Keys {
        darksky: "PLANTEDdarkskyA1b2C3d4".into(),
        openweathermap: "PLANTEDowmE5f6G7h8".into(),
        here: "PLANTEDhereI9j0K1l2".into(),
    }
}

const STRING_SECRET: &str = "PLANTEDstringM3n4O5p6";
const BINARY_SECRET: &[u8] = b"PLANTEDbinary\x00\x01\xfe\xff";

/// Every form a value could leak in.
fn forms(values: &[Vec<u8>]) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for v in values {
        out.push(("plain".into(), v.clone()));
        for (name, engine) in [
            ("base64", base64::engine::general_purpose::STANDARD),
            ("base64url", base64::engine::general_purpose::URL_SAFE_NO_PAD),
        ] {
            out.push((name.into(), engine.encode(v).into_bytes()));
        }
    }
    out
}

fn scan(what: &str, haystack: &[u8], needles: &[(String, Vec<u8>)]) -> Vec<String> {
    needles
        .iter()
        .filter(|(_, n)| haystack.windows(n.len()).any(|w| w == n.as_slice()))
        .map(|(form, n)| format!("{what}: {form} {}", String::from_utf8_lossy(n)))
        .collect()
}

async fn scenario(level: &str) -> anyhow::Result<Vec<String>> {
    let keys = planted();
    // Not frozen between invokes: the test also talks to the sidecar directly.
    let cfg = WorldConfig {
        keys: keys.clone(),
        freeze: false,
        ..WorldConfig::default()
    }
    .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", level)
    .env("AWS_LAMBDA_LOG_LEVEL", level);
    let world = World::start(cfg).await?;
    world.moto.create_secret("hygiene/string", STRING_SECRET).await?;
    world.moto.create_binary_secret("hygiene/binary", BINARY_SECRET).await?;
    let mut bodies: Vec<Vec<u8>> = Vec::new();

    // The happy path for every provider, then a rotation (refused key → refreshNow).
    for provider in ["darksky", "openweathermap", "here"] {
        let out = world.get(&format!("/{provider}/1/2")).await;
        anyhow::ensure!(
            matches!(out.outcome, Outcome::Response(_)),
            "{provider}: {:?}",
            out.outcome
        );
    }
    let providers = world.providers.as_ref().ok_or_else(|| anyhow::anyhow!("fakes"))?;
    providers.set_key(harness::fakes::Api::Here, "PLANTEDrotatedQ7r8S9");
    world
        .moto
        .put_parameter(
            harness::world::HERE_PARAMETER,
            "PLANTEDrotatedQ7r8S9",
            harness::moto::ParamType::SecureString,
        )
        .await?;
    let _ = world.get("/here/1/2").await;
    // A key that stays wrong: the 502 body must not echo it.
    providers.set_key(harness::fakes::Api::DarkSky, "somebody-else");
    if let Outcome::Response(b) = world.get("/darksky/1/2").await.outcome {
        bodies.push(b.to_vec());
    }
    // Direct requests to the sidecar: every output shape and error path.
    let port = world
        .emulator
        .config()
        .env
        .iter()
        .find(|(k, _)| k == "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT")
        .map(|(_, v)| v.clone())
        .unwrap_or_default();
    let token = world.emulator.config().session_token.clone();
    let http = HttpClient::new();
    for path in [
        "/secretsmanager/get?secretId=hygiene/string",
        "/secretsmanager/get?secretId=hygiene/string&raw=true",
        "/secretsmanager/get?secretId=hygiene/binary&raw=true",
        "/secretsmanager/get?secretId=hygiene/binary&jsonKey=x",
        "/secretsmanager/get?secretId=weather/openweathermap&jsonKey=appid",
        "/secretsmanager/get?secretId=weather/openweathermap&jsonKey=missing",
        "/secretsmanager/get?secretId=hygiene/string&jsonKey=x",
        "/secretsmanager/get?secretId=hygiene/string&refreshNow=true",
        "/systemsmanager/parameters/get?name=/weather/darksky-api-key&withDecryption=true",
        "/systemsmanager/parameters/get?name=/weather/darksky-api-key",
        "/systemsmanager/parameters/get?name=/weather/darksky-api-key:9",
        "/secretsmanager/get?secretId=no/such/secret",
        "/secretsmanager/get?secretId=hygiene/string&bogus=1",
    ] {
        let r = http
            .get(
                &format!("http://127.0.0.1:{port}{path}"),
                &[("X-Aws-Parameters-Secrets-Token", &token)],
            )
            .await?;
        if r.status >= 400 {
            bodies.push(r.body.to_vec());
        }
    }
    world.emulator.settle().await;
    world.emulator.shutdown(ShutdownReason::Spindown).await;

    let logs = world.emulator.logs().lines();
    anyhow::ensure!(
        logs.iter().any(|l| l.contains("[secrets-sidecar]")),
        "the sidecar logged"
    );
    let mut values: Vec<Vec<u8>> = [
        &keys.darksky,
        &keys.openweathermap,
        &keys.here,
        STRING_SECRET,
        "PLANTEDrotatedQ7r8S9",
    ]
    .iter()
    .map(|s| s.as_bytes().to_vec())
    .collect();
    values.push(BINARY_SECRET.to_vec());
    let needles = forms(&values);
    let mut found = Vec::new();
    for line in &logs {
        found.extend(scan("log", line.as_bytes(), &needles));
    }
    for body in &bodies {
        found.extend(scan("error body", body, &needles));
    }
    eprintln!(
        "{level}: {} log lines and {} error bodies scanned for {} forms of {} values",
        logs.len(),
        bodies.len(),
        needles.len(),
        values.len()
    );
    Ok(found)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_in_any_log_or_error_body_at_debug() -> R {
    let found = scenario("debug").await?;
    assert!(found.is_empty(), "leaked: {found:#?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_value_in_any_log_or_error_body_at_trace() -> R {
    let found = scenario("trace").await?;
    assert!(found.is_empty(), "leaked: {found:#?}");
    Ok(())
}

#[test]
fn the_scanner_finds_what_it_looks_for() {
    let needles = forms(&[b"hunter2".to_vec()]);
    assert_eq!(scan("x", b"..hunter2..", &needles).len(), 1);
    assert_eq!(
        scan("x", b"..aHVudGVyMg==..", &needles).len(),
        2,
        "standard and url-safe share this prefix"
    );
    assert!(scan("x", b"nothing here", &needles).is_empty());
}
