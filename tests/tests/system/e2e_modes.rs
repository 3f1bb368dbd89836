//! End to end on every Lambda platform: the real `secrets-sidecar` layer and the real
//! weather `bootstrap` under the emulator in provisioned-concurrency, SnapStart and
//! Managed Instances modes (on-demand is `e2e.rs`), with moto behind the fault proxy.
//! Each test prints the figures the closing notes quote: INIT time, upstream calls,
//! requests that missed the cache, SHUTDOWN → exit.

use std::time::{Duration, Instant};

use harness::emulator::{Mode, ShutdownReason, Trace};
use harness::fakes::FakeProviders;
use harness::world::{get_event, http_answer, World, WorldConfig};

type R = anyhow::Result<()>;

const PROVIDERS: [&str; 3] = ["darksky", "openweathermap", "here"];

/// Calls that fetch one key on behalf of one request: a request that missed the
/// cache. Prefetch and refresh-ahead use the batch APIs only.
fn single_key_calls(world: &World) -> u64 {
    world.proxy.count("GetSecretValue") + world.proxy.count("GetParameter")
}

/// Asks each provider once and checks the answers.
async fn all_three_answer(world: &World) -> R {
    for provider in PROVIDERS {
        let out = world.get(&format!("/{provider}/48.85/2.35")).await;
        let (status, answer) = http_answer(&out.outcome);
        anyhow::ensure!(status == 200, "{provider}: {status} {answer}");
        anyhow::ensure!(
            answer["temperature"] == FakeProviders::celsius(48.85, 2.35),
            "{provider}: {answer}"
        );
    }
    Ok(())
}

/// SHUTDOWN → the sidecar's own exit (it must not be killed).
async fn shut_down(world: &World) -> anyhow::Result<Duration> {
    let report = world.emulator.shutdown(ShutdownReason::Spindown).await;
    anyhow::ensure!(report.killed.is_empty(), "{report:?}");
    anyhow::ensure!(report.next_after_shutdown.is_empty(), "{report:?}");
    report
        .extensions
        .iter()
        .find(|(name, _)| name == "secrets-sidecar")
        .and_then(|(_, exit)| *exit)
        .ok_or_else(|| anyhow::anyhow!("the sidecar did not exit by itself: {report:?}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn provisioned_environments_refresh_in_one_batch_when_the_first_invoke_comes() -> R {
    let ttl = Duration::from_secs(2);
    let world = World::start(
        WorldConfig::default()
            .mode(Mode::Provisioned)
            .env("SECRETS_MANAGER_TTL", "2")
            .env("SSM_PARAMETER_STORE_TTL", "2"),
    )
    .await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    let after_init = world.proxy.counts();
    // Provisioned ahead of traffic: frozen far past every TTL before the first invoke.
    world.emulator.idle(ttl * 3).await.map_err(anyhow::Error::msg)?;
    all_three_answer(&world).await?;
    let batches = |w: &World| w.proxy.count("BatchGetSecretValue") + w.proxy.count("GetParameters");
    let refreshed = batches(&world) - (after_init["BatchGetSecretValue"] + after_init["GetParameters"]);
    // The first INVOKE found every prefetched entry due and refreshed them in one
    // batch per API; the function's requests joined it instead of calling on their own.
    assert_eq!(
        refreshed,
        2,
        "one BatchGetSecretValue and one GetParameters: {:?}",
        world.proxy.counts()
    );
    assert_eq!(
        single_key_calls(&world),
        0,
        "no request fetched on its own: {:?}",
        world.proxy.counts()
    );
    let exit = shut_down(&world).await?;
    eprintln!(
        "provisioned: init {init:?}; upstream calls {} ({:?}); requests that missed the cache: 0; SHUTDOWN → exit {exit:?}",
        world.proxy.total(),
        world.proxy.counts()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_snapshots_hold_no_value_and_the_restore_fetches_in_one_batch() -> R {
    let world = World::start(WorldConfig::default().mode(Mode::SnapStart)).await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    assert_eq!(
        world.proxy.total(),
        0,
        "nothing fetched during INIT: {:?}",
        world.proxy.counts()
    );
    let keys = [&world.keys.darksky, &world.keys.openweathermap, &world.keys.here];
    let scan = world.emulator.snapshot(&keys).await.map_err(anyhow::Error::msg)?;
    assert!(
        scan.bytes > 0 && !scan.processes.is_empty(),
        "the scan read memory: {scan:?}"
    );
    assert!(scan.findings.is_empty(), "values in the snapshot: {:?}", scan.findings);
    world
        .emulator
        .restore(Duration::from_millis(500))
        .await
        .map_err(anyhow::Error::msg)?;
    let restored = Instant::now();
    all_three_answer(&world).await?;
    let first_answers = restored.elapsed();
    // The restore fetched everything in one batch per API, and no request on its own.
    let counts = world.proxy.counts();
    assert_eq!(world.proxy.count("BatchGetSecretValue"), 1, "{counts:?}");
    assert_eq!(world.proxy.count("GetParameters"), 1, "{counts:?}");
    assert_eq!(world.proxy.count("GetParametersByPath"), 1, "{counts:?}");
    assert_eq!(single_key_calls(&world), 0, "{counts:?}");
    let exit = shut_down(&world).await?;
    eprintln!(
        "snap-start: init {init:?}; snapshot scan: {} processes, {} bytes, {} unreadable regions, {} of {} values found; three answers {first_answers:?} after the restore; upstream calls {} ({counts:?}); requests that missed the cache: 0; SHUTDOWN → exit {exit:?}",
        scan.processes.len(),
        scan.bytes,
        scan.unreadable,
        scan.findings.len(),
        scan.values,
        world.proxy.total(),
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn managed_instances_serve_invokes_at_once_from_a_timer_refreshed_cache() -> R {
    let ttl = Duration::from_secs(2);
    let world = World::start(
        WorldConfig::default()
            .mode(Mode::managed_instances(8))
            .env("SECRETS_MANAGER_TTL", "2")
            .env("SSM_PARAMETER_STORE_TTL", "2")
            .env("SECRETS_SIDECAR_REFRESH_AHEAD", "0.5"),
    )
    .await?;
    let init = world.emulator.init().await.map_err(anyhow::Error::msg)?;
    let prefetched = world.proxy.total();
    // 16 invokes, 8 at a time, across the three providers.
    let paths: Vec<String> = (0..16)
        .map(|i| format!("/{}/{}/2.35", PROVIDERS[i % 3], 40 + i))
        .collect();
    let outs = world
        .emulator
        .invoke_all(paths.iter().map(|p| get_event(p)).collect())
        .await;
    for (path, out) in paths.iter().zip(&outs) {
        let (status, answer) = http_answer(&out.outcome);
        assert_eq!(status, 200, "{path}: {answer} {:?}", out.outcome);
    }
    // Several TTLs with requests but no INVOKE to the sidecar (it registered for
    // SHUTDOWN only): its timer keeps every key fresh, so no request ever fetches.
    let started = Instant::now();
    let mut rounds = 0;
    while started.elapsed() < ttl * 4 || world.proxy.count("BatchGetSecretValue") < 3 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(60),
            "the timer never refreshed: {:?}",
            world.proxy.counts()
        );
        all_three_answer(&world).await?;
        rounds += 1;
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    assert_eq!(
        single_key_calls(&world),
        0,
        "a request missed the cache: {:?}",
        world.proxy.counts()
    );
    let trace = world.emulator.trace();
    assert!(
        !trace
            .iter()
            .any(|t| matches!(&t.what, Trace::InvokeToExtension { name, .. } if name == "secrets-sidecar")),
        "no INVOKE reaches the sidecar on Managed Instances"
    );
    assert!(!trace.iter().any(|t| t.what == Trace::Frozen), "never frozen");
    let exit = shut_down(&world).await?;
    eprintln!(
        "managed-instances: init {init:?}; {} invokes ({} at once, then {rounds} rounds of three over {:?}); upstream calls {} ({} at start-up; {:?}); requests that missed the cache: 0; SHUTDOWN → exit {exit:?}",
        16 + 3 * rounds,
        8,
        started.elapsed(),
        world.proxy.total(),
        prefetched,
        world.proxy.counts()
    );
    Ok(())
}
