//! `make demo`: the weather API running locally as it would in AWS.
//!
//! moto (local AWS) is seeded with the three provider keys; fake providers stand in
//! for Dark Sky/Pirate Weather, OpenWeatherMap and HERE (or the real ones when
//! `DARKSKY_KEY`, `OPENWEATHERMAP_APPID` and `HERE_API_KEY` are all set); the Lambda
//! emulator runs the real `secrets-sidecar` from a layer folder beside the real weather
//! `bootstrap`; an API-Gateway-like server serves `GET /{provider}/{lat}/{lon}` on
//! 127.0.0.1:9000 (`DEMO_PORT`). Three example calls are shown, then it serves until
//! Ctrl-C; `DEMO_ONESHOT=1` exits after the examples, 0 only if all three answered 200
//! (and the SDK function below answered the secret on every invoke).
//!
//! `DEMO_MODE` picks the platform: `on-demand` (the default), `provisioned` (init,
//! then the environment idles frozen before the first call), `snapstart` (init, then
//! the snapshot is scanned for the three keys and restored after a pause; credentials
//! come from the container credentials endpoint), `managed-instances` (nothing frozen,
//! up to four invokes at once, the sidecar registered for SHUTDOWN only).
//!
//! Then the article's second approach: a Node.js function calling `GetSecretValue`
//! with the AWS SDK for JavaScript v3 on every invoke, code unchanged, runs
//! `SDK_INVOKES` times straight to "AWS" (moto behind the fault proxy, 20 ms added to
//! each call) and `SDK_INVOKES` times with the sidecar in its layer and
//! `AWS_ENDPOINT_URL_SECRETS_MANAGER` pointing at it: invokes, upstream calls and the
//! SDK call's median for each (`harness::sdk_function`).

use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{anyhow, Result};
use harness::emulator::gateway::serve_http_api;
use harness::emulator::{Mode, ShutdownReason};
use harness::net::HttpClient;
use harness::proxy::Fault;
use harness::sdk_function::{sha256_hex, Route, SdkFunction};
use harness::world::{Keys, World, WorldConfig, ROUTE};

/// Managed Instances: invokes at once (`AWS_LAMBDA_MAX_CONCURRENCY`).
const MAX_CONCURRENCY: usize = 4;
/// Provisioned concurrency: the idle spell between init and the first call.
const IDLE_SPELL: Duration = Duration::from_secs(2);
/// SnapStart: how long the snapshot sits before it is restored.
const SNAPSHOT_PAUSE: Duration = Duration::from_secs(1);
/// The SDK-function part: invokes per route.
const SDK_INVOKES: usize = 20;
/// The SDK-function part: the round trip added to each call reaching "AWS".
const AWS_ROUND_TRIP: Duration = Duration::from_millis(20);
/// The SDK-function part: the secret it reads.
const SDK_SECRET: &str = "demo/article-sdk";

fn mode() -> Result<Mode> {
    let s = std::env::var("DEMO_MODE").unwrap_or_default();
    Mode::parse(&s, MAX_CONCURRENCY)
        .ok_or_else(|| anyhow!("DEMO_MODE={s}: use on-demand, provisioned, snapstart or managed-instances"))
}

/// What each platform does between init and traffic.
async fn before_traffic(world: &World, mode: Mode) -> Result<()> {
    match mode {
        Mode::Provisioned => {
            world.emulator.idle(IDLE_SPELL).await.map_err(anyhow::Error::msg)?;
            println!("provisioned concurrency: the environment idled, frozen, for {IDLE_SPELL:?}");
        }
        Mode::SnapStart => {
            let keys = &world.keys;
            let planted = [&keys.darksky, &keys.openweathermap, &keys.here];
            let report = world.emulator.snapshot(&planted).await.map_err(anyhow::Error::msg)?;
            println!(
                "snapshot: {} processes and {} files under /tmp scanned for the three keys (#0 Dark Sky, #1 OpenWeatherMap, #2 HERE): {} found",
                report.processes.len(),
                report.files.len(),
                report.findings.len()
            );
            for finding in &report.findings {
                println!("  {finding}");
            }
            world
                .emulator
                .restore(SNAPSHOT_PAUSE)
                .await
                .map_err(anyhow::Error::msg)?;
            println!("restored after {SNAPSHOT_PAUSE:?}");
        }
        Mode::OnDemand | Mode::ManagedInstances { .. } => {}
    }
    Ok(())
}

const REAL_URLS: (&str, &str, &str) = (
    "https://api.pirateweather.net/forecast",
    "https://api.openweathermap.org/data/2.5/weather",
    "https://weather.hereapi.com/v3/report",
);

fn real_keys() -> Option<Keys> {
    let get = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    Some(Keys {
        darksky: get("DARKSKY_KEY")?,
        openweathermap: get("OPENWEATHERMAP_APPID")?,
        here: get("HERE_API_KEY")?,
    })
}

async fn run() -> Result<bool> {
    let port: u16 = std::env::var("DEMO_PORT")
        .ok()
        .and_then(|p| p.parse().ok())
        .unwrap_or(9000);
    let mode = mode()?;
    let mut cfg = WorldConfig::default().mode(mode);
    match real_keys() {
        Some(keys) => {
            println!("using the real providers (keys from DARKSKY_KEY, OPENWEATHERMAP_APPID, HERE_API_KEY)");
            cfg.keys = keys;
            cfg.provider_urls = Some((REAL_URLS.0.into(), REAL_URLS.1.into(), REAL_URLS.2.into()));
        }
        None => println!(
            "using local fake providers (set DARKSKY_KEY, OPENWEATHERMAP_APPID and HERE_API_KEY for the real ones)"
        ),
    }
    println!("starting moto (local AWS), seeding the keys, starting the Lambda emulator ({mode}) ...");
    let world = World::start(cfg).await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    println!(
        "environment initialised in {:.1} ms: secrets-sidecar registered, upstream calls during init {:?}, then the runtime started",
        init.as_secs_f64() * 1000.0,
        world.proxy.counts()
    );
    before_traffic(&world, mode).await?;
    let door = serve_http_api(world.emulator.clone(), SocketAddr::from(([127, 0, 0, 1], port)), ROUTE).await?;
    println!("weather API on http://127.0.0.1:{}{ROUTE}", door.port);

    let http = HttpClient::new();
    let mut all_ok = true;
    let before = world.proxy.total();
    for path in [
        "/darksky/52.52/13.40",
        "/openweathermap/40.71/-74.01",
        "/here/-33.87/151.21",
    ] {
        let url = door.url(path);
        let r = http.get(&url, &[]).await?;
        all_ok &= r.status == 200;
        println!("\n$ curl -s {url}\nHTTP {}", r.status);
        match serde_json::from_slice::<serde_json::Value>(&r.body) {
            Ok(v) => println!("{}", serde_json::to_string_pretty(&v).unwrap_or_default()),
            Err(_) => println!("{}", r.text()),
        }
    }
    world.emulator.settle().await;
    println!();
    for line in world.emulator.logs().lines().iter().filter(|l| l.starts_with("REPORT")) {
        println!("{line}");
    }
    let upstream = world.proxy.total() - before;
    let note = if upstream == 0 {
        "all answered from the sidecar's cache"
    } else {
        "fetched on first use"
    };
    println!("secret requests during the three calls: {upstream} upstream ({note})");
    all_ok &= match sdk_function_part(&world).await {
        Ok(ok) => ok,
        Err(e) => {
            println!("the SDK function failed: {e:#}");
            false
        }
    };
    if std::env::var_os("DEMO_ONESHOT").is_some() {
        let report = world.emulator.shutdown(ShutdownReason::Spindown).await;
        println!("shutdown: {:?}", report.extensions);
        return Ok(all_ok);
    }
    println!("\nserving on http://127.0.0.1:{} until Ctrl-C", door.port);
    tokio::signal::ctrl_c().await?;
    world.emulator.shutdown(ShutdownReason::Spindown).await;
    Ok(all_ok)
}

/// The article's second approach, unchanged, straight to AWS and then through the
/// sidecar; true when every invoke of both answered the secret.
async fn sdk_function_part(world: &World) -> Result<bool> {
    println!(
        "\narticle-style function: Node.js, AWS SDK for JavaScript v3, GetSecretValue on every invoke, unchanged code; \
         AWS = moto behind the fault proxy with {AWS_ROUND_TRIP:?} added per call"
    );
    let value = format!("demo-sdk-{}", uuid::Uuid::new_v4().simple());
    world.moto.create_secret(SDK_SECRET, &value).await?;
    let digest = sha256_hex(value.as_bytes())?;
    world
        .proxy
        .inject(Some("GetSecretValue"), Fault::Latency(AWS_ROUND_TRIP), None);
    let mut all_right = true;
    for route in [Route::Direct, Route::Sidecar] {
        let function = SdkFunction::start(SDK_SECRET, &world.proxy.endpoint(), route, &[]).await?;
        let before = world.proxy.count("GetSecretValue");
        let tally = function.invoke_n(SDK_INVOKES, &digest).await;
        function.emulator.settle().await;
        let upstream = world.proxy.count("GetSecretValue") - before;
        function.emulator.shutdown(ShutdownReason::Spindown).await;
        let tally = tally?;
        all_right &= tally.right == tally.invokes;
        println!(
            "  {route:<20} AWS_ENDPOINT_URL_SECRETS_MANAGER={:<24} {} invokes, {} answered the secret, {upstream} upstream GetSecretValue, SDK call p50 {:.1} ms",
            function.endpoint,
            tally.invokes,
            tally.right,
            tally.p50()
        );
    }
    world.proxy.clear();
    Ok(all_right)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("demo: not every example answered 200, or the SDK function did not answer the secret");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("demo failed: {e:#}");
            ExitCode::FAILURE
        }
    }
}
