//! The byte budget in a function environment: a 128 MB function whose code asks for
//! 5,000 distinct 64 KB secrets (320 MB of values) through the sidecar gets every one
//! of them, while the sidecar's resident set stays under its idle figure plus the
//! budget the function's memory gives it (8 MiB) and the allocator's slack, evicting
//! as it goes; an evicted id is fetched again when asked.

use std::time::Duration;

use harness::emulator::{Outcome, ShutdownReason};
use harness::world::{Function, World, WorldConfig};
use serde_json::{json, Value};

type R = anyhow::Result<()>;

const SECRETS: usize = 5_000;
/// Secrets Manager's largest value is 65,536 bytes.
const VALUE_LEN: usize = 64_000;
/// Requests per invoke.
const CHUNK: usize = 500;

fn name(i: usize) -> String {
    format!("budget/{i:05}")
}

/// A value that says whose it is in its first characters.
fn value(i: usize) -> String {
    let head = format!("{}:", name(i));
    format!("{head}{}", "v".repeat(VALUE_LEN - head.len()))
}

fn path(i: usize) -> String {
    format!("/secretsmanager/get?secretId={}", name(i))
}

/// `VmRSS` and `VmHWM` of `pid`, in bytes.
fn rss(pid: i32) -> anyhow::Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .ok_or_else(|| anyhow::anyhow!("no {key} in /proc/{pid}/status"))
    };
    Ok((field("VmRSS:")?, field("VmHWM:")?))
}

/// The answers of one `fetch_many` invoke.
fn many(outcome: &Outcome) -> anyhow::Result<Vec<Value>> {
    let Outcome::Response(body) = outcome else {
        anyhow::bail!("the invoke failed: {outcome:?}");
    };
    let v: Value = serde_json::from_slice(body)?;
    Ok(v["many"].as_array().cloned().unwrap_or_default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn five_thousand_large_secrets_in_a_128_mb_function_stay_within_the_budget() -> R {
    let world = World::start(WorldConfig {
        function: Function::Probe(Vec::new()),
        timeout: Duration::from_secs(120),
        ..WorldConfig::default()
    })
    .await?;
    assert_eq!(world.emulator.config().memory_mb, 128);
    let budget: u64 = 128 * 1024 * 1024 / 16;

    // Seed moto one request at a time: its server is not safe for concurrent creates.
    for i in 0..SECRETS {
        world.moto.create_secret(&name(i), &value(i)).await?;
    }

    // The environment's first invoke: INIT, then nothing asked yet.
    many(
        &world
            .emulator
            .invoke(json!({ "fetch_many": [] }).to_string())
            .await
            .outcome,
    )?;
    let pid = world
        .emulator
        .pids()
        .into_iter()
        .find(|(_, name)| name.starts_with("secrets-sidecar"))
        .map(|(pid, _)| pid)
        .ok_or_else(|| anyhow::anyhow!("no sidecar among {:?}", world.emulator.pids()))?;
    let (idle, _) = rss(pid)?;

    let mut highest_rss = idle;
    let mut samples = Vec::new();
    for start in (0..SECRETS).step_by(CHUNK) {
        let paths: Vec<String> = (start..start + CHUNK).map(path).collect();
        let invoked = world.emulator.invoke(json!({ "fetch_many": paths }).to_string()).await;
        let answers = many(&invoked.outcome)?;
        assert_eq!(answers.len(), CHUNK, "one answer per request");
        for (i, a) in (start..).zip(&answers) {
            assert_eq!(a["status"], 200, "{}: {a}", name(i));
            assert_eq!(a["len"], VALUE_LEN, "{}: {a}", name(i));
            assert!(
                a["head"]
                    .as_str()
                    .is_some_and(|h| h.starts_with(&format!("{}:", name(i)))),
                "{} answered another value: {a}",
                name(i)
            );
        }
        let now = rss(pid)?.0;
        samples.push(format!("{:.1}", now as f64 / (1024.0 * 1024.0)));
        highest_rss = highest_rss.max(now);
    }
    let (_, peak) = rss(pid)?;

    // An id evicted long ago is a miss now, fetched again and served correctly.
    let again = world
        .emulator
        .invoke(json!({ "fetch_many": [path(0), path(SECRETS - 1)] }).to_string())
        .await;
    let again = many(&again.outcome)?;
    assert_eq!(again[0]["status"], 200);
    assert_eq!(again[0]["cache"], "miss", "{}", again[0]);
    assert!(again[0]["head"]
        .as_str()
        .is_some_and(|h| h.starts_with(&format!("{}:", name(0)))));
    assert_eq!(again[1]["cache"], "hit", "the most recent is still held: {}", again[1]);

    let mib = |b: u64| b as f64 / (1024.0 * 1024.0);
    println!(
        "byte budget: {SECRETS} x {VALUE_LEN} B values, budget {:.1} MiB, RSS idle {:.1} MiB, \
         highest sampled {:.1} MiB, peak (VmHWM) {:.1} MiB; after each 500: {}",
        mib(budget),
        mib(idle),
        mib(highest_rss),
        mib(peak),
        samples.join(" ")
    );
    // glibc's malloc keeps freed blocks resident: with 64 KB values churning through
    // the cache (the SDK's response buffer, the parsed string and the rendered body
    // per fetch) the peak stood 1.4 to 2.4 MiB above idle plus budget in every run,
    // with one arena and with a fixed mmap threshold alike. Half the budget is allowed
    // for it; without the budget the cache would hold 1,000 of these values: 61 MiB.
    let allowed = idle + budget + budget / 2;
    assert!(
        peak < allowed,
        "the sidecar's peak RSS {:.1} MiB passed idle {:.1} MiB + budget {:.1} MiB + half of it \
         for the allocator",
        mib(peak),
        mib(idle),
        mib(budget)
    );

    world.emulator.shutdown(ShutdownReason::Spindown).await;
    let stopped = world
        .emulator
        .logs()
        .wait_for(Duration::from_secs(10), |l| {
            l.starts_with("[secrets-sidecar] ") && l.contains("stopped") && l.contains("summary")
        })
        .await?;
    let evictions: u64 = stopped
        .split_once("evictions=")
        .and_then(|(_, rest)| rest.split(|c: char| !c.is_ascii_digit()).next())
        .and_then(|n| n.parse().ok())
        .ok_or_else(|| anyhow::anyhow!("no evictions in the summary: {stopped}"))?;
    let held = (budget / VALUE_LEN as u64) as usize;
    assert!(
        evictions as usize >= SECRETS - held,
        "{evictions} evictions for {SECRETS} values of which about {held} fit: {stopped}"
    );
    Ok(())
}
