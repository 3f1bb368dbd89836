//! End to end: the real `secrets-sidecar` in an emulated Lambda environment beside
//! the real weather `bootstrap` (or the probe runtime, which reports what the cache
//! did), with moto behind the fault proxy and the fake providers.

use std::time::{Duration, Instant};

use harness::emulator::{Outcome, Phase, ShutdownReason};
use harness::fakes::{Api, FakeProviders};
use harness::net::HttpClient;
use harness::proxy::Fault;
use harness::world::{Function, World, WorldConfig};
use serde_json::Value;

type R = anyhow::Result<()>;

fn body(outcome: &Outcome) -> Value {
    match outcome {
        Outcome::Response(b) => serde_json::from_slice(b).unwrap_or(Value::Null),
        other => panic!("no response: {other:?}"),
    }
}

/// The function's HTTP API answer: (status, JSON body).
fn http(outcome: &Outcome) -> (u64, Value) {
    let v = body(outcome);
    let status = v["statusCode"].as_u64().unwrap_or(0);
    let inner = v["body"]
        .as_str()
        .and_then(|b| serde_json::from_str(b).ok())
        .unwrap_or(Value::Null);
    (status, inner)
}

fn probe(settings: &[(&str, &str)]) -> Function {
    Function::Probe(settings.iter().map(|(k, v)| ((*k).into(), (*v).into())).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cold_start_prefetches_and_the_first_requests_need_no_upstream_call() -> R {
    let world = World::start(WorldConfig::default()).await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    // One batch per API during init, before the first event/next.
    let counts = world.proxy.counts();
    assert_eq!(world.proxy.count("BatchGetSecretValue"), 1, "{counts:?}");
    assert_eq!(world.proxy.count("GetParameters"), 1, "{counts:?}");
    assert_eq!(world.proxy.count("GetParametersByPath"), 1, "{counts:?}");
    let after_init = world.proxy.total();

    for provider in ["darksky", "openweathermap", "here"] {
        let out = world.get(&format!("/{provider}/48.85/2.35")).await;
        let (status, answer) = http(&out.outcome);
        assert_eq!(status, 200, "{provider}: {answer}");
        assert_eq!(answer["temperature"], FakeProviders::celsius(48.85, 2.35));
        assert_eq!(answer["units"], "celsius");
    }
    assert_eq!(
        world.proxy.total(),
        after_init,
        "the function's secret requests were all hits"
    );

    // The same through the API-Gateway-like front door.
    let door = harness::emulator::gateway::serve_http_api(
        world.emulator.clone(),
        ([127, 0, 0, 1], 0).into(),
        harness::world::ROUTE,
    )
    .await?;
    let r = HttpClient::new().get(&door.url("/here/-33.87/151.21"), &[]).await?;
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["temperature"], FakeProviders::celsius(-33.87, 151.21));
    assert_eq!(HttpClient::new().get(&door.url("/here/1"), &[]).await?.status, 404);
    let bad = HttpClient::new().get(&door.url("/here/NaN/1"), &[]).await?;
    assert_eq!(bad.status, 400);
    world.emulator.settle().await;
    let report = world.emulator.reports().first().cloned();
    eprintln!("init {init:?}; first REPORT {report:?}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn warm_invokes_across_short_ttls_never_wait_on_upstream() -> R {
    let ttl = Duration::from_secs(2);
    let cfg = WorldConfig {
        function: probe(&[(
            "PROBE_RUNTIME_FETCH",
            "/secretsmanager/get?secretId=weather/openweathermap",
        )]),
        ..WorldConfig::default()
    }
    .env("SECRETS_MANAGER_TTL", "2")
    .env("SSM_PARAMETER_STORE_TTL", "2")
    .env("SECRETS_SIDECAR_REFRESH_AHEAD", "0.5");
    let world = World::start(cfg).await?;
    world.emulator.init().await.map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut invokes = 0;
    // Invokes every 400 ms for four TTLs, frozen in between.
    while started.elapsed() < ttl * 4 {
        let out = world.emulator.invoke("{}").await;
        let fetch = body(&out.outcome)["fetch"].clone();
        assert_eq!(fetch["status"], 200, "{fetch}");
        assert_eq!(fetch["cache"], "hit", "invoke {invokes} waited on upstream: {fetch}");
        invokes += 1;
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    world.emulator.settle().await;
    let batches = world.proxy.count("BatchGetSecretValue");
    let elapsed = started.elapsed();
    // One prefetch, then a refresh each time an invoke finds the entry past half its TTL.
    let most = 1 + (elapsed.as_secs_f64() / (ttl.as_secs_f64() * 0.5)).ceil() as u64;
    eprintln!("{invokes} invokes over {elapsed:?}: {batches} BatchGetSecretValue calls (at most {most})");
    assert!(batches >= 3 && batches <= most, "{batches} calls");
    assert_eq!(
        world.proxy.count("GetSecretValue"),
        0,
        "no request ever fetched on its own"
    );
    assert!(world
        .emulator
        .trace()
        .iter()
        .any(|t| t.what == harness::emulator::Trace::Frozen));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_takes_effect_at_once_through_refresh_now() -> R {
    let world = World::start(WorldConfig::default()).await?;
    let out = world.get("/openweathermap/10/20").await;
    assert_eq!(http(&out.outcome).0, 200);
    let providers = world.providers.as_ref().ok_or_else(|| anyhow::anyhow!("fakes"))?;
    // Rotation: a new appid at the provider and in Secrets Manager.
    world
        .moto
        .put_secret_value(harness::world::OPENWEATHERMAP_SECRET, r#"{"appid":"rotated-appid"}"#)
        .await?;
    providers.set_key(Api::OpenWeatherMap, "rotated-appid");
    let before = world.proxy.count("GetSecretValue");
    let out = world.get("/openweathermap/10/20").await;
    let (status, answer) = http(&out.outcome);
    assert_eq!(status, 200, "{answer}");
    assert_eq!(
        providers.rejected(Api::OpenWeatherMap),
        1,
        "the cached appid was refused once"
    );
    assert_eq!(world.proxy.count("GetSecretValue"), before + 1, "one forced refresh");
    // Later invokes use the refreshed value from the cache.
    let out = world.get("/openweathermap/10/20").await;
    assert_eq!(http(&out.outcome).0, 200);
    assert_eq!(providers.rejected(Api::OpenWeatherMap), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rotated_value_is_seen_after_the_ttl_without_refresh_now() -> R {
    let cfg = WorldConfig {
        function: probe(&[
            (
                "PROBE_RUNTIME_FETCH",
                "/secretsmanager/get?secretId=weather/openweathermap&jsonKey=appid",
            ),
            ("PROBE_RUNTIME_SHOW_VALUE", "1"),
        ]),
        ..WorldConfig::default()
    }
    .env("SECRETS_MANAGER_TTL", "1");
    let world = World::start(cfg).await?;
    let value = |out: &Outcome| body(out)["fetch"]["body"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        value(&world.emulator.invoke("{}").await.outcome),
        world.keys.openweathermap
    );
    world
        .moto
        .put_secret_value(harness::world::OPENWEATHERMAP_SECRET, r#"{"appid":"after-ttl"}"#)
        .await?;
    // Within the TTL: the cached value.
    assert_eq!(
        value(&world.emulator.invoke("{}").await.outcome),
        world.keys.openweathermap
    );
    // One TTL later the new value is served.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let seen = value(&world.emulator.invoke("{}").await.outcome);
    assert_eq!(seen, "after-ttl");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_throttling_serve_stale_values_then_recover() -> R {
    let cfg = WorldConfig {
        function: probe(&[(
            "PROBE_RUNTIME_FETCH",
            "/systemsmanager/parameters/get?name=/weather/darksky-api-key&withDecryption=true",
        )]),
        ..WorldConfig::default()
    }
    .env("SSM_PARAMETER_STORE_TTL", "1")
    .env("SECRETS_MANAGER_TTL", "1");
    let world = World::start(cfg).await?;
    let fetch = |out: &Outcome| body(out)["fetch"].clone();
    assert_eq!(fetch(&world.emulator.invoke("{}").await.outcome)["cache"], "hit");

    world.proxy.inject(None, Fault::Throttle, None);
    tokio::time::sleep(Duration::from_millis(1200)).await;
    let f = fetch(&world.emulator.invoke("{}").await.outcome);
    assert_eq!(
        (f["status"].as_u64(), f["cache"].as_str()),
        (Some(200), Some("stale")),
        "{f}"
    );
    world.proxy.clear();
    world.proxy.inject(None, Fault::ServerError, None);
    for _ in 0..5 {
        let f = fetch(&world.emulator.invoke("{}").await.outcome);
        assert_eq!(f["status"], 200, "{f}");
    }
    let during = world.proxy.total();
    world.proxy.clear();
    world
        .moto
        .put_parameter(
            harness::world::DARKSKY_PARAMETER,
            "new-darksky",
            harness::moto::ParamType::SecureString,
        )
        .await?;
    // Recovery: after the backoff, a fresh value (the new one) comes through.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = world.emulator.invoke("{}").await;
        let f = fetch(&out.outcome);
        if f["cache"] != "stale" {
            assert_eq!(f["status"], 200);
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "no recovery: {f}");
        tokio::time::sleep(Duration::from_millis(300)).await;
    }
    eprintln!("upstream calls while failing: {during} (all operations, SDK retries included)");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_is_fast_and_wipes() -> R {
    let world = World::start(WorldConfig::default()).await?;
    let out = world.get("/darksky/1/2").await;
    assert_eq!(http(&out.outcome).0, 200);
    let report = world.emulator.shutdown(ShutdownReason::Spindown).await;
    let (_, exit) = report
        .extensions
        .iter()
        .find(|(n, _)| n == "secrets-sidecar")
        .cloned()
        .ok_or_else(|| anyhow::anyhow!("no sidecar in {report:?}"))?;
    let exit = exit.ok_or_else(|| anyhow::anyhow!("the sidecar had to be killed: {report:?}"))?;
    eprintln!("SHUTDOWN → sidecar exit: {exit:?}");
    assert!(exit < Duration::from_millis(500), "{exit:?}");
    assert!(report.killed.iter().all(|k| k != "secrets-sidecar"));
    let logs = world.emulator.logs().lines().join("\n");
    assert!(
        logs.contains("[secrets-sidecar]") && logs.contains("stopped"),
        "summary line logged"
    );
    assert_eq!(world.emulator.phase(), Phase::Idle);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_sidecar_configuration_fails_the_environment_visibly() -> R {
    let world = World::start(WorldConfig::default().env("SECRETS_MANAGER_TTL", "one hour")).await?;
    let out = world.get("/darksky/1/2").await;
    match &out.outcome {
        Outcome::Failed(why) => {
            assert!(why.contains("Extension.ConfigInvalid"), "{why}");
            assert!(
                why.contains("SECRETS_MANAGER_TTL") && why.contains("0 to 86400"),
                "{why}"
            );
        }
        other => panic!("expected a failed init, got {other:?}"),
    }
    Ok(())
}
