//! `make demo`: the sidecar against a local AWS (moto) seeded with the weather app's
//! provider keys, three example requests shown with their answers (values masked),
//! then serving until Ctrl-C. `DEMO_ONESHOT=1` exits after the examples, 0 only if
//! all three answered 200.

use std::process::ExitCode;
use std::time::Duration;

use anyhow::Result;
use harness::moto::{Moto, ParamType};
use harness::net::Response;
use harness::sidecar::SidecarBuilder;
use serde_json::Value;

/// The demo's stand-in keys. Not secrets, but masked in the output all the same,
/// as a real deployment would need.
const SEED: &[(&str, &str)] = &[
    ("ssm-secure:/weather/darksky-api-key", "demo-darksky-key"),
    ("secret:weather/openweathermap", r#"{"appid":"demo-owm-appid"}"#),
    ("ssm-secure:/weather/here/api-key", "demo-here-key"),
];

fn mask(mut v: Value) -> Value {
    for field in ["SecretString", "SecretBinary"] {
        if v.get(field).is_some() {
            v[field] = Value::from("***");
        }
    }
    if v["Parameter"].get("Value").is_some() {
        v["Parameter"]["Value"] = Value::from("***");
    }
    v
}

fn show(what: &str, port: u16, path: &str, r: &Response) {
    println!("\n$ curl -H \"X-Aws-Parameters-Secrets-Token: $TOKEN\" 'http://127.0.0.1:{port}{path}'   # {what}");
    println!(
        "HTTP {} (cache: {})",
        r.status,
        r.header("x-secrets-sidecar-cache").unwrap_or("-")
    );
    let body = serde_json::from_slice::<Value>(&r.body).map(mask);
    match body {
        Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
        Err(_) => println!("<{} bytes, masked>", r.body.len()),
    }
}

async fn run() -> Result<bool> {
    let bin = harness::bins::find("secrets-sidecar", "SIDECAR_BIN")?;
    println!("starting moto (local AWS) ...");
    let moto = Moto::start().await?;
    for (what, value) in SEED {
        match what.split_once(':') {
            Some(("secret", name)) => {
                moto.create_secret(name, value).await?;
            }
            Some((_, name)) => {
                moto.put_parameter(name, value, ParamType::SecureString).await?;
            }
            None => {}
        }
    }
    let port: u16 = std::env::var("DEMO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9000);
    let token = std::env::var("DEMO_TOKEN").unwrap_or_else(|_| "demo-token".to_owned());
    let sc = SidecarBuilder::new(&bin)
        .endpoint(&moto.endpoint())
        .port(port)
        .token(&token)
        .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "info")
        .var(
            "SECRETS_SIDECAR_PREFETCH",
            "ssm:/weather/darksky-api-key secretsmanager:weather/openweathermap ssm-path:/weather/here/",
        );
    let sc = sc.spawn().await?;
    println!("secrets-sidecar listening on http://127.0.0.1:{port} (standalone mode, prefetched at start-up)");
    let calls = [
        (
            "Dark Sky key: SSM SecureString",
            "/systemsmanager/parameters/get?name=/weather/darksky-api-key&withDecryption=true",
        ),
        (
            "OpenWeatherMap appid: a field of a JSON secret",
            "/secretsmanager/get?secretId=weather/openweathermap",
        ),
        (
            "HERE key: under an SSM path",
            "/systemsmanager/parameters/get?name=/weather/here/api-key&withDecryption=true",
        ),
    ];
    let mut all_ok = true;
    for (what, path) in calls {
        let r = sc.get(path).await?;
        all_ok &= r.status == 200;
        show(what, port, path, &r);
    }
    if std::env::var_os("DEMO_ONESHOT").is_some() {
        return Ok(all_ok);
    }
    println!("\nserving on http://127.0.0.1:{port} with the demo token (DEMO_TOKEN overrides it):");
    println!("  TOKEN={token}; curl -H \"X-Aws-Parameters-Secrets-Token: $TOKEN\" 'http://127.0.0.1:{port}/secretsmanager/get?secretId=weather/openweathermap&jsonKey=appid'");
    println!("Ctrl-C to stop.");
    tokio::signal::ctrl_c().await?;
    drop(sc);
    tokio::time::sleep(Duration::from_millis(50)).await;
    Ok(all_ok)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: not every example answered 200");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
