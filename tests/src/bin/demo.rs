//! `make demo`: the weather API running locally as it would in AWS.
//!
//! moto (local AWS) is seeded with the three provider keys; fake providers stand in
//! for Dark Sky/Pirate Weather, OpenWeatherMap and HERE (or the real ones when
//! `DARKSKY_KEY`, `OPENWEATHERMAP_APPID` and `HERE_API_KEY` are all set); the Lambda
//! emulator runs the real `secrets-sidecar` from a layer folder beside the real weather
//! `bootstrap`; an API-Gateway-like server serves `GET /{provider}/{lat}/{lon}` on
//! 127.0.0.1:9000 (`DEMO_PORT`). Three example calls are shown, then it serves until
//! Ctrl-C; `DEMO_ONESHOT=1` exits after the examples, 0 only if all three answered 200.

use std::net::SocketAddr;
use std::process::ExitCode;

use anyhow::Result;
use harness::emulator::gateway::serve_http_api;
use harness::emulator::ShutdownReason;
use harness::net::HttpClient;
use harness::world::{Keys, World, WorldConfig, ROUTE};

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
    let mut cfg = WorldConfig::default();
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
    println!("starting moto (local AWS), seeding the keys, starting the Lambda emulator ...");
    let world = World::start(cfg).await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    println!(
        "environment initialised in {:.1} ms: secrets-sidecar registered, prefetched {:?}, then the runtime started",
        init.as_secs_f64() * 1000.0,
        world.proxy.counts()
    );
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
    println!(
        "secret requests during the three calls: {} upstream (all answered from the sidecar's cache)",
        world.proxy.total() - before
    );
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
