//! An independent cross-check of our emulator: one end-to-end scenario (prefetch at
//! start-up, a weather request answered with no upstream call, a clean shutdown)
//! driven by the `lambda-simulator` crate instead of `harness::emulator`.

use std::time::Duration;

use harness::fakes::FakeProviders;
use harness::moto::Moto;
use harness::proxy::FaultProxy;
use harness::world::{seed, Keys, PREFETCH, ROUTE};
use lambda_simulator::process::{ProcessConfig, ProcessRole};
use lambda_simulator::{InvocationStatus, ShutdownReason, Simulator};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weather_request_through_lambda_simulator() -> anyhow::Result<()> {
    let sidecar = harness::bins::ensure("secrets-sidecar", "secrets-sidecar", "SIDECAR_BIN")?;
    let bootstrap = harness::bins::ensure("bootstrap", "weather-function", "BOOTSTRAP_BIN")?;
    let keys = Keys::default();
    let moto = Moto::start().await?;
    seed(&moto, &keys).await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let providers = FakeProviders::start(&keys.darksky, &keys.openweathermap, &keys.here).await?;

    let sim = Simulator::builder().function_name("weather").build().await?;
    let port = harness::net::free_port().to_string();
    let common = |role| {
        ProcessConfig::new(
            if role == ProcessRole::Extension {
                &sidecar
            } else {
                &bootstrap
            },
            role,
        )
        .env("AWS_ACCESS_KEY_ID", "ASIASIMULATOR")
        .env("AWS_SECRET_ACCESS_KEY", "simulator-secret")
        .env("AWS_SESSION_TOKEN", "simulator-session-token")
        .env("AWS_ENDPOINT_URL", proxy.endpoint())
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.clone())
        .env("SECRETS_SIDECAR_PREFETCH", PREFETCH)
        .env("DARKSKY_URL", providers.darksky_url())
        .env("OPENWEATHERMAP_URL", providers.openweathermap_url())
        .env("HERE_URL", providers.here_url())
    };
    let mut extension = sim.spawn_process_with_config(common(ProcessRole::Extension))?;
    sim.wait_for(|| async { sim.extension_count().await >= 1 }, Duration::from_secs(10))
        .await?;
    let _runtime = sim.spawn_process_with_config(common(ProcessRole::Runtime))?;

    let path = "/openweathermap/40.71/-74.0";
    let params = harness::emulator::gateway::match_route(ROUTE, path).unwrap_or_default();
    let event = harness::emulator::gateway::http_api_event(
        ROUTE,
        &http::Method::GET,
        path,
        "",
        &http::HeaderMap::new(),
        params,
        &bytes::Bytes::new(),
    );
    let request_id = sim.enqueue_payload(event).await;
    let state = sim
        .wait_for_invocation_complete(&request_id, Duration::from_secs(10))
        .await?;
    assert_eq!(state.status, InvocationStatus::Success, "{:?}", state.error);
    let payload = state.response.map(|r| r.payload).unwrap_or_default();
    assert_eq!(payload["statusCode"], 200, "{payload}");
    let answer: serde_json::Value = serde_json::from_str(payload["body"].as_str().unwrap_or("{}"))?;
    assert_eq!(answer["temperature"], FakeProviders::celsius(40.71, -74.0));
    // The prefetch made the only calls: the request itself was a cache hit.
    // The runtime starts as soon as the sidecar registers, so its request may race the
    // prefetch: it must join the batch, not make a call of its own.
    let counts = proxy.counts();
    assert_eq!(proxy.count("BatchGetSecretValue"), 1, "{counts:?}");
    assert_eq!(proxy.count("GetSecretValue"), 0, "{counts:?}");

    sim.graceful_shutdown(ShutdownReason::Spindown).await;
    // The simulator's process handle only offers a non-blocking check: poll it, bounded.
    let status = harness::net::poll(Duration::from_secs(3), "the sidecar's exit after SHUTDOWN", || {
        let exited = extension.try_wait().ok().flatten();
        async move { exited }
    })
    .await?;
    assert!(status.success(), "{status}");
    Ok(())
}
