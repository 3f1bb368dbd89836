//! End to end: the real `secrets-sidecar` in an emulated Lambda environment beside
//! the real weather `bootstrap` (or the probe runtime, which reports what the cache
//! did), with moto behind the fault proxy and the fake providers.

use std::time::{Duration, Instant};

use harness::emulator::{Outcome, Phase, ShutdownReason, Trace};
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

/// When the emulator first recorded an event matching `pred`. Tests compare these
/// instants with the sidecar's TTLs: both are the machine's monotonic clock, which
/// keeps running while the environment is frozen.
fn traced(world: &World, pred: impl Fn(&Trace) -> bool) -> anyhow::Result<tokio::time::Instant> {
    world
        .emulator
        .trace()
        .iter()
        .find(|t| pred(&t.what))
        .map(|t| t.at)
        .ok_or_else(|| anyhow::anyhow!("no such event in the emulator's trace"))
}

/// When the sidecar registered: it prefetches only after that, so every value it
/// holds was fetched later than this.
fn sidecar_registered(world: &World) -> anyhow::Result<tokio::time::Instant> {
    traced(
        world,
        |t| matches!(t, Trace::Registered { name, .. } if name == "secrets-sidecar"),
    )
}

/// When the runtime answered invoke `request_id`: its request to the sidecar came earlier.
fn runtime_answered(world: &World, request_id: &str) -> anyhow::Result<tokio::time::Instant> {
    traced(
        world,
        |t| matches!(t, Trace::RuntimeAnswered { request_id: r } if r == request_id),
    )
}

/// The fields of the sidecar's "stopped" line's `summary` (`name=value` pairs), in
/// either log format (text: `summary=requests=1 hits=1 …`; JSON: `"summary":"…"`).
fn summary_fields(line: &str) -> Vec<(String, String)> {
    let summary = line.split_once("summary").map_or("", |(_, rest)| rest);
    summary
        .split(|c: char| c.is_whitespace() || c == '"' || c == ',' || c == '}')
        .filter_map(|token| token.trim_start_matches([':', '=']).split_once('='))
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect()
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
    let refresh_ahead = 0.5;
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
    // Whether an invoke must be a hit depends on when it came, not on how fast this
    // machine is. An INVOKE reaching the sidecar at `s` leaves behind an entry that is
    // fresh until at least `s + ttl * (1 - refresh_ahead)`: either it was younger than
    // its refresh point at `s` (so it lives that much longer), or the sidecar refreshed
    // it before its next `event/next` (stored after `s`). So an invoke whose request
    // reached the sidecar sooner than that after the previous INVOKE (or the sidecar's
    // registration, for the first) must be a hit. Invokes later than that (a loaded
    // machine) are counted, not judged.
    let window = ttl.mul_f64(1.0 - refresh_ahead);
    let started = Instant::now();
    let deadline = started + Duration::from_secs(60);
    let mut previous = sidecar_registered(&world)?;
    let (mut on_time, mut late) = (0u64, 0u64);
    // Several refresh cycles, each seen by invokes that came in time.
    while on_time < 8 || world.proxy.count("BatchGetSecretValue") < 4 {
        anyhow::ensure!(
            Instant::now() < deadline,
            "{on_time} invokes in time ({late} late), {} BatchGetSecretValue calls: refresh-ahead never caught up",
            world.proxy.count("BatchGetSecretValue")
        );
        let out = world.emulator.invoke("{}").await;
        let fetch = body(&out.outcome)["fetch"].clone();
        assert_eq!(fetch["status"], 200, "{fetch}");
        let answered = runtime_answered(&world, &out.request_id)?;
        if answered.saturating_duration_since(previous) < window {
            assert_eq!(fetch["cache"], "hit", "invoke {on_time} waited on upstream: {fetch}");
            on_time += 1;
        } else {
            late += 1;
        }
        previous = traced(&world, |t| {
            matches!(t, Trace::InvokeToExtension { name, request_id, .. }
                if name == "secrets-sidecar" && *request_id == out.request_id)
        })?;
        // Frozen in between, as Lambda does between invokes.
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    world.emulator.settle().await;
    let batches = world.proxy.count("BatchGetSecretValue");
    let elapsed = started.elapsed();
    // One prefetch, then at most one refresh per refresh point (`ttl * refresh_ahead`
    // apart at least), all of them after `started`.
    let most = 2 + (elapsed.as_secs_f64() / (ttl.as_secs_f64() * refresh_ahead)).floor() as u64;
    eprintln!("{on_time} invokes in time, {late} late, over {elapsed:?}: {batches} BatchGetSecretValue calls (at most {most})");
    assert!(batches <= most, "{batches} calls");
    assert!(
        world.proxy.count("GetSecretValue") <= late,
        "only a late invoke may fetch on its own"
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
    let ttl = Duration::from_secs(5);
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
    .env("SECRETS_MANAGER_TTL", "5")
    // No refresh ahead of expiry: the new value can only come from the TTL running out.
    .env("SECRETS_SIDECAR_REFRESH_AHEAD", "1");
    let world = World::start(cfg).await?;
    let value = |out: &Outcome| body(out)["fetch"]["body"].as_str().unwrap_or("").to_owned();
    assert_eq!(
        value(&world.emulator.invoke("{}").await.outcome),
        world.keys.openweathermap
    );
    world.emulator.settle().await;
    world
        .moto
        .put_secret_value(harness::world::OPENWEATHERMAP_SECRET, r#"{"appid":"after-ttl"}"#)
        .await?;
    // The cached value was fetched after the sidecar registered, so it is fresh until
    // at least `registered + ttl`: every request before that gets the cached value,
    // and the new one arrives after it.
    let registered = sidecar_registered(&world)?;
    let deadline = Instant::now() + ttl + Duration::from_secs(30);
    let mut within_ttl = 0;
    loop {
        let out = world.emulator.invoke("{}").await;
        let seen = value(&out.outcome);
        let since = runtime_answered(&world, &out.request_id)?.saturating_duration_since(registered);
        if seen == "after-ttl" {
            assert!(
                since >= ttl,
                "the rotated value was served {since:?} after the sidecar registered, within the {ttl:?} TTL"
            );
            eprintln!("{within_ttl} invokes within the TTL kept the cached value; the new one came {since:?} after registering");
            break;
        }
        assert_eq!(seen, world.keys.openweathermap, "{since:?} after registering");
        if since < ttl {
            within_ttl += 1;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "the rotated value was not served {since:?} after the sidecar registered"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        within_ttl > 0,
        "no invoke came within the TTL, so none showed the cached value being kept"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn outage_and_throttling_serve_stale_values_then_recover() -> R {
    let cfg = WorldConfig {
        function: probe(&[
            (
                "PROBE_RUNTIME_FETCH",
                "/systemsmanager/parameters/get?name=/weather/darksky-api-key&withDecryption=true",
            ),
            ("PROBE_RUNTIME_SHOW_VALUE", "1"),
        ]),
        ..WorldConfig::default()
    }
    .env("SSM_PARAMETER_STORE_TTL", "1")
    .env("SECRETS_MANAGER_TTL", "1");
    let world = World::start(cfg).await?;
    let fetch = |out: &Outcome| body(out)["fetch"].clone();
    assert_eq!(fetch(&world.emulator.invoke("{}").await.outcome)["cache"], "hit");

    // Throttled: every answer is still a 200, until the TTL runs out and the held
    // value is served stale.
    world.proxy.inject(None, Fault::Throttle, None);
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let f = fetch(&world.emulator.invoke("{}").await.outcome);
        assert_eq!(f["status"], 200, "{f}");
        if f["cache"] == "stale" {
            break;
        }
        anyhow::ensure!(Instant::now() < deadline, "never served stale: {f}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    world.proxy.clear();
    world.proxy.inject(None, Fault::ServerError, None);
    for _ in 0..5 {
        let f = fetch(&world.emulator.invoke("{}").await.outcome);
        assert_eq!(f["status"], 200, "{f}");
    }
    let during = world.proxy.total();
    // Rotated before AWS comes back, so any value fetched after that is the new one.
    world
        .moto
        .put_parameter(
            harness::world::DARKSKY_PARAMETER,
            "new-darksky",
            harness::moto::ParamType::SecureString,
        )
        .await?;
    world.proxy.clear();
    // Recovery: after the backoff (at most a few seconds here), the new value comes through.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let out = world.emulator.invoke("{}").await;
        let f = fetch(&out.outcome);
        if f["cache"] != "stale" {
            assert_eq!(f["status"], 200, "{f}");
            let served: Value = serde_json::from_str(f["body"].as_str().unwrap_or("")).unwrap_or(Value::Null);
            assert_eq!(served["Parameter"]["Value"], "new-darksky", "{f}");
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
    // Lambda's rule, enforced by the emulator: exit before the SHUTDOWN deadline (2 s)
    // or be SIGKILLed. `Some` means the sidecar exited by itself in time.
    let exit = exit.ok_or_else(|| anyhow::anyhow!("the sidecar had to be killed: {report:?}"))?;
    eprintln!("SHUTDOWN → sidecar exit: {exit:?}");
    assert!(report.killed.iter().all(|k| k != "secrets-sidecar"), "{report:?}");
    let exited = world.emulator.trace().into_iter().find_map(|t| match t.what {
        Trace::ProcessExited { name, code } if name == "secrets-sidecar" => Some(code),
        _ => None,
    });
    assert_eq!(exited, Some(Some(0)), "the sidecar exits 0 on SHUTDOWN");
    // The wipe: the summary line reports no entries and no value bytes left alive.
    let stopped = world
        .emulator
        .logs()
        .wait_for(Duration::from_secs(10), |l| {
            l.starts_with("[secrets-sidecar] ") && l.contains("stopped") && l.contains("summary")
        })
        .await?;
    let fields = summary_fields(&stopped);
    let field = |name: &str| fields.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    assert_eq!(field("requests"), Some("1"), "the invoke's one key request: {stopped}");
    assert_eq!(field("entries"), Some("0"), "entries left after the wipe: {stopped}");
    assert!(
        field("live_value_bytes").is_some(),
        "the sidecar's \"stopped\" summary has no live_value_bytes field (bytes of cached \
         values still alive, counted by the value type), so the wipe cannot be checked: {stopped}"
    );
    assert_eq!(
        field("live_value_bytes"),
        Some("0"),
        "cached value bytes still alive after the wipe: {stopped}"
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
