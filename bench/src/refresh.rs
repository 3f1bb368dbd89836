//! Section 4 — Refresh-ahead: an invoke series under the emulator crossing several TTLs with
//! processes frozen between invokes. The function (the probe runtime) times its
//! secret request on every invoke; the baseline is the same series with a TTL long
//! enough that no refresh falls inside it. Also counts upstream calls per TTL, and
//! (for the cost section) the calls the same series makes with caching off, which
//! is what fetching through the SDK on every invoke costs.

use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use harness::emulator::Outcome;
use harness::world::{Function, World, WorldConfig};

use crate::report::{quantile, verdict, Table};

pub struct Series {
    pub invokes: usize,
    pub elapsed: Duration,
    pub p50_us: f64,
    pub p99_us: f64,
    pub not_hits: usize,
    pub batch_calls: u64,
    pub single_calls: u64,
}

async fn series(ttl: &str, refresh_ahead: &str, invokes: usize, gap: Duration) -> Result<Series> {
    let cfg = WorldConfig {
        function: Function::Probe(vec![(
            "PROBE_RUNTIME_FETCH".into(),
            "/secretsmanager/get?secretId=weather/openweathermap".into(),
        )]),
        ..WorldConfig::default()
    }
    // Caching off cannot prefetch (the sidecar refuses that configuration).
    .env(
        "SECRETS_SIDECAR_PREFETCH",
        if ttl == "0" {
            ""
        } else {
            "secretsmanager:weather/openweathermap"
        },
    )
    .env("SECRETS_MANAGER_TTL", ttl)
    .env("SECRETS_SIDECAR_REFRESH_AHEAD", refresh_ahead)
    .env("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn");
    let world = World::start(cfg).await?;
    world.emulator.init().await.map_err(anyhow::Error::msg)?;
    let started = Instant::now();
    let mut micros = Vec::new();
    let mut not_hits = 0;
    for _ in 0..invokes {
        let out = world.emulator.invoke("{}").await;
        let Outcome::Response(body) = out.outcome else {
            return Err(anyhow!("invoke failed: {:?}", out.outcome));
        };
        let v: serde_json::Value = serde_json::from_slice(&body)?;
        micros.push(v["fetch"]["micros"].as_f64().unwrap_or(f64::NAN));
        if v["fetch"]["cache"] != "hit" {
            not_hits += 1;
        }
        tokio::time::sleep(gap).await;
    }
    world.emulator.settle().await;
    Ok(Series {
        invokes,
        elapsed: started.elapsed(),
        p50_us: quantile(&mut micros.clone(), 0.5),
        p99_us: quantile(&mut micros, 0.99),
        not_hits,
        batch_calls: world.proxy.count("BatchGetSecretValue"),
        single_calls: world.proxy.count("GetSecretValue"),
    })
}

pub struct Measured {
    pub text: String,
    /// Upstream calls per key per TTL with refresh-ahead (measured).
    pub calls_per_ttl: f64,
    /// Upstream calls per invoke with caching off (measured).
    pub calls_per_invoke_uncached: f64,
    pub refresh_ahead: f64,
}

pub async fn run(smoke: bool) -> Result<Measured> {
    let (ttl, ttls, gap) = if smoke {
        (1u64, 2u64, Duration::from_millis(100))
    } else {
        (2, 6, Duration::from_millis(200))
    };
    let invokes = ((ttl * ttls * 1000) / gap.as_millis() as u64) as usize;
    let subject = series(&ttl.to_string(), "0.75", invokes, gap).await?;
    let baseline = series("3600", "0.75", invokes, gap).await?;
    let uncached = series("0", "0.75", invokes.min(50), gap).await?;

    let windows = subject.elapsed.as_secs_f64() / ttl as f64;
    let refreshes = subject.batch_calls.saturating_sub(1) + subject.single_calls;
    let calls_per_ttl = refreshes as f64 / windows;
    let ratio = subject.p99_us / baseline.p99_us;
    let mut t = Table::new(&[
        "series",
        "invokes",
        "TTLs crossed",
        "p50",
        "p99",
        "not cache hits",
        "upstream calls",
    ]);
    for (name, s, crossed) in [
        (
            format!("TTL {ttl} s, refresh-ahead 0.75 (subject)"),
            &subject,
            format!("{windows:.1}"),
        ),
        ("TTL 3600 s (baseline: no refresh due)".into(), &baseline, "0".into()),
        ("TTL 0 (caching off: a call per invoke)".into(), &uncached, "—".into()),
    ] {
        t.row(vec![
            name,
            s.invokes.to_string(),
            crossed,
            format!("{:.0} µs", s.p50_us),
            format!("{:.0} µs", s.p99_us),
            s.not_hits.to_string(),
            format!(
                "{} (BatchGetSecretValue {}, GetSecretValue {})",
                s.batch_calls + s.single_calls,
                s.batch_calls,
                s.single_calls
            ),
        ]);
    }
    let mut targets = Table::new(&["target", "measured", ""]);
    targets.row(vec![
        "function-visible p99 with refreshes = warm-hit p99 (within noise), no request waits on upstream".into(),
        format!(
            "p99 ratio {ratio:.2}×; {} of {} requests not hits",
            subject.not_hits, subject.invokes
        ),
        verdict(subject.not_hits == 0 && ratio < 1.5).into(),
    ]);
    targets.row(vec![
        "upstream calls per key: one per TTL".into(),
        format!("{calls_per_ttl:.2} per TTL (refresh at 0.75 of the TTL: at most 1.33)"),
        verdict(calls_per_ttl <= 1.0 / 0.75 + 0.1).into(),
    ]);
    let text = format!(
        "{}\n{}\nThe probe runtime (`tests/src/bin/probe-runtime.rs`) times its GET to the sidecar inside each invoke; the emulator freezes every process between invokes ({} ms apart). Refresh-ahead runs on INVOKE, before the extension's next `event/next`, batched. A refresh at 0.75 of the TTL means up to 1/0.75 = 1.33 calls per TTL when invokes are frequent; `SECRETS_SIDECAR_REFRESH_AHEAD=1.0` gives one per TTL at the price of refreshing at the expiry edge.\n",
        t.render(),
        targets.render(),
        gap.as_millis()
    );
    Ok(Measured {
        text,
        calls_per_ttl,
        calls_per_invoke_uncached: (uncached.batch_calls + uncached.single_calls) as f64 / uncached.invokes as f64,
        refresh_ahead: 0.75,
    })
}
