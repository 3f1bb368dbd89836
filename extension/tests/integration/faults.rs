//! Upstream faults (reliability suite 1): with a warm cache, an outage many TTLs long,
//! a throttling storm, connection resets and an upstream slower than the timeout leave
//! every request answered (stale), upstream calls bounded by the backoff, and recovery
//! picks up new values. With nothing cached, the right 429/502/504 arrives within the
//! configured timeout. `SOAK=1` (make soak) stretches the outage to minutes.

use std::time::{Duration, Instant};

use harness::moto::Moto;
use harness::proxy::{Fault, FaultProxy};
use harness::sidecar::{Sidecar, SidecarBuilder};

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");
const KEYS: usize = 3;
/// How long a request may take when the sidecar's upstream timeout (under 1 s in these
/// tests) decides its answer: generous for a loaded machine, yet shorter than the 10 s
/// first-byte bound the sidecar falls back to without a configured timeout, so a
/// sidecar that ignored the setting would miss it.
const ANSWER_WAIT: Duration = Duration::from_secs(8);

type R = anyhow::Result<()>;

fn soak() -> bool {
    std::env::var_os("SOAK").is_some()
}

async fn warm_sidecar(proxy: &FaultProxy, timeout_ms: &str) -> anyhow::Result<Sidecar> {
    let refs: Vec<String> = (0..KEYS).map(|i| format!("secretsmanager:faults/{i}")).collect();
    let sc = SidecarBuilder::new(BIN)
        .endpoint(&proxy.endpoint())
        .var("SECRETS_MANAGER_TTL", "1")
        .var("SECRETS_SIDECAR_MAX_STALE", "3600")
        .var("SECRETS_MANAGER_TIMEOUT_MILLIS", timeout_ms)
        .var("SECRETS_SIDECAR_PREFETCH", &refs.join(","))
        .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
        .spawn()
        .await?;
    for i in 0..KEYS {
        assert_eq!(
            sc.get(&format!("/secretsmanager/get?secretId=faults/{i}"))
                .await?
                .status,
            200
        );
    }
    Ok(sc)
}

/// Upper bound on upstream operations per key during an outage of `secs`: the first
/// try at expiry, then retries after 1, 2, 4 … s (equal jitter: at least half of
/// each step), capped at 60 s; plus one for an attempt in flight at either end.
fn attempts_bound(secs: f64) -> u64 {
    let (mut t, mut step, mut n) = (0.0, 1.0f64, 2u64);
    while t < secs {
        t += step / 2.0;
        step = (step * 2.0).min(60.0);
        n += 1;
    }
    n
}

async fn outage(fault: Fault) -> R {
    let moto = Moto::start().await?;
    for i in 0..KEYS {
        moto.create_secret(&format!("faults/{i}"), &format!("v1-{i}")).await?;
    }
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = warm_sidecar(&proxy, "2000").await?;
    let length = if soak() {
        Duration::from_secs(300)
    } else {
        Duration::from_secs(6)
    };
    let before = proxy.total();
    let started = Instant::now();
    proxy.inject(None, fault.clone(), None);
    let (mut answered, mut stale, mut total) = (0u64, 0u64, 0u64);
    while started.elapsed() < length {
        for i in 0..KEYS {
            let r = sc.get(&format!("/secretsmanager/get?secretId=faults/{i}")).await?;
            total += 1;
            if r.status == 200 && r.json()["SecretString"] == format!("v1-{i}") {
                answered += 1;
            }
            if r.header("x-secrets-sidecar-cache") == Some("stale") {
                stale += 1;
            }
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let calls = proxy.total() - before;
    // The outage as it lasted (a loaded machine stretches it past `length`). With a
    // value in hand every operation is a single HTTP attempt (no SDK retries): the
    // cache's backoff alone paces the calls, one per key per step.
    let lasted = started.elapsed();
    let bound = KEYS as u64 * attempts_bound(lasted.as_secs_f64());
    eprintln!("{fault:?}: {answered}/{total} answered ({stale} stale) over {lasted:?}; {calls} upstream calls (bound {bound})");
    assert_eq!(answered, total, "every request for a cached key is answered");
    assert!(stale > 0, "values past their TTL were marked stale");
    assert!(
        calls <= bound,
        "{calls} upstream calls, more than the backoff allows ({bound})"
    );

    // Recovery: new values arrive once the backoff lets the next try through.
    proxy.clear();
    for i in 0..KEYS {
        moto.put_secret_value(&format!("faults/{i}"), &format!("v2-{i}"))
            .await?;
    }
    let recovered = harness::net::poll(Duration::from_secs(70), "recovery", || async {
        let mut fresh = 0;
        for i in 0..KEYS {
            let r = sc.get(&format!("/secretsmanager/get?secretId=faults/{i}")).await.ok()?;
            if r.json()["SecretString"] == format!("v2-{i}") {
                fresh += 1;
            }
        }
        (fresh == KEYS).then_some(())
    })
    .await;
    assert!(recovered.is_ok(), "new values were picked up after the outage");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_long_outage_is_served_stale_with_bounded_retries() -> R {
    outage(Fault::ServerError).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_throttling_storm_is_served_stale_with_bounded_retries() -> R {
    outage(Fault::Throttle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_resets_are_served_stale_with_bounded_retries() -> R {
    outage(Fault::Drop).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upstream_slower_than_the_timeout_is_served_stale() -> R {
    let moto = Moto::start().await?;
    for i in 0..KEYS {
        moto.create_secret(&format!("faults/{i}"), &format!("v1-{i}")).await?;
    }
    moto.create_secret("faults/cold", "never-cached").await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let sc = warm_sidecar(&proxy, "500").await?;
    // Upstream never answers: only the sidecar's 500 ms timeout ends a call.
    proxy.inject(None, Fault::Hang, None);
    // Every request is answered with the cached value: a hit until the 1 s TTL runs
    // out, then (once the timeout gives up on upstream) the same value, stale.
    for i in 0..KEYS {
        let path = format!("/secretsmanager/get?secretId=faults/{i}");
        let answer = harness::net::poll(Duration::from_secs(30), "the TTL running out", || async {
            match tokio::time::timeout(ANSWER_WAIT, sc.get(&path)).await {
                Ok(Ok(r)) if r.header("x-secrets-sidecar-cache") == Some("hit") => None,
                other => Some(other),
            }
        })
        .await?;
        let stale = answer.map_err(|_| anyhow::anyhow!("{path}: no answer within {ANSWER_WAIT:?}"))??;
        assert_eq!(
            (stale.status, stale.header("x-secrets-sidecar-cache")),
            (200, Some("stale")),
            "{}",
            stale.text()
        );
        assert_eq!(stale.json()["SecretString"], format!("v1-{i}"));
    }
    let cold = tokio::time::timeout(ANSWER_WAIT, sc.get("/secretsmanager/get?secretId=faults/cold"))
        .await
        .map_err(|_| anyhow::anyhow!("no 504 within {ANSWER_WAIT:?} with a 500 ms timeout"))??;
    assert_eq!(
        (cold.status, cold.json()["error"].as_str()),
        (504, Some("UpstreamTimeout")),
        "{}",
        cold.text()
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn with_nothing_cached_each_fault_gets_its_status_in_time() -> R {
    let moto = Moto::start().await?;
    moto.create_secret("faults/cold", "v").await?;
    for (fault, status, code) in [
        (Fault::Throttle, 429, "Throttled"),
        (Fault::ServerError, 502, "UpstreamUnavailable"),
        (Fault::Drop, 502, "UpstreamUnavailable"),
        (Fault::Hang, 504, "UpstreamTimeout"),
        (Fault::Error(400, "AccessDeniedException"), 403, "AccessDenied"),
    ] {
        let proxy = FaultProxy::start(moto.port).await?;
        proxy.inject(None, fault.clone(), None);
        let sc = SidecarBuilder::new(BIN)
            .endpoint(&proxy.endpoint())
            .var("SECRETS_MANAGER_TIMEOUT_MILLIS", "800")
            .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
            .spawn()
            .await?;
        // In time: the hang is cut by the 800 ms timeout (without it, by the 10 s
        // first-byte bound, too late for this wait), and every other fault gets its
        // answer after at most the SDK's three attempts.
        let r = tokio::time::timeout(ANSWER_WAIT, sc.get("/secretsmanager/get?secretId=faults/cold"))
            .await
            .map_err(|_| anyhow::anyhow!("{fault:?}: no answer within {ANSWER_WAIT:?} (timeout 800 ms)"))??;
        assert_eq!(
            (r.status, r.json()["error"].as_str()),
            (status, Some(code)),
            "{fault:?}: {}",
            r.text()
        );
        assert!(
            proxy.total() <= 3,
            "{fault:?}: {} upstream attempts for one request",
            proxy.total()
        );
    }
    Ok(())
}

#[test]
fn the_backoff_bound_grows_logarithmically() {
    assert_eq!(attempts_bound(0.0), 2);
    assert!(attempts_bound(6.0) <= 6);
    // Five minutes of requests every 50 ms (6,000) allow at most 18 tries per key.
    assert!(attempts_bound(300.0) <= 18);
}
