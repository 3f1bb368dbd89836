//! Section 6 — Memory and size: resident memory idle and with 1,000 cached 4 KB secrets
//! (two kinds of values: opaque key material and JSON), against the minimal hyper
//! server's idle RSS; the stripped binary and the layer zip.

use std::time::Duration;

use anyhow::{anyhow, Result};
use harness::moto::Moto;
use harness::net::free_port;
use harness::process::Proc;
use harness::sidecar::SidecarBuilder;

use crate::report::{verdict, Table};
use crate::Tools;

/// VmRSS of a process, in KiB.
fn rss_kib(pid: u32) -> Result<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no VmRSS for {pid}"))
}

fn mib(kib: u64) -> String {
    format!("{:.1} MiB", kib as f64 / 1024.0)
}

fn value(i: usize, json: bool) -> String {
    // Deterministic, incompressible-looking 4 KB values.
    let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ i as u64;
    let mut s = String::with_capacity(4096);
    while s.len() < 4000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        s.push(char::from(
            b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"[(x % 62) as usize],
        ));
    }
    if json {
        serde_json::json!({ "user": format!("user-{i}"), "password": &s[..3900] }).to_string()
    } else {
        s.truncate(4096);
        s
    }
}

async fn cached_rss(tools: &Tools, moto: &Moto, prefix: &str, n: usize) -> Result<u64> {
    let refs: Vec<String> = (0..n).map(|i| format!("secretsmanager:{prefix}/{i}")).collect();
    let sc = SidecarBuilder::new(&tools.sidecar)
        .endpoint(&moto.endpoint())
        .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
        .var("SECRETS_SIDECAR_PREFETCH", &refs.join(","))
        .var("SECRETS_SIDECAR_INIT_TIMEOUT_MILLIS", "9000")
        .spawn()
        .await?;
    let entries = sc.metric("secrets_sidecar_cache_entries").await?;
    anyhow::ensure!(entries as usize == n, "{entries} of {n} cached");
    rss_kib(sc.proc.pid().ok_or_else(|| anyhow!("sidecar gone"))?)
}

pub async fn run(tools: &Tools, smoke: bool) -> Result<String> {
    let n = if smoke { 50 } else { 1000 };
    let moto = Moto::start().await?;
    for i in 0..n {
        moto.create_secret(&format!("bench/mem/opaque/{i}"), &value(i, false))
            .await?;
        moto.create_secret(&format!("bench/mem/json/{i}"), &value(i, true))
            .await?;
    }
    let idle = {
        let sc = SidecarBuilder::new(&tools.sidecar)
            .endpoint(&moto.endpoint())
            .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
            .spawn()
            .await?;
        rss_kib(sc.proc.pid().ok_or_else(|| anyhow!("sidecar gone"))?)?
    };
    let baseline_idle = {
        let port = free_port();
        let mut cmd = tokio::process::Command::new(&tools.baseline);
        cmd.arg(port.to_string()).arg("/dev/null");
        let p = Proc::spawn("baseline", cmd)?;
        p.logs
            .wait_for(Duration::from_secs(5), |l| l.starts_with("listening"))
            .await?;
        rss_kib(p.pid().ok_or_else(|| anyhow!("baseline gone"))?)?
    };
    let opaque = cached_rss(tools, &moto, "bench/mem/opaque", n).await?;
    let json = cached_rss(tools, &moto, "bench/mem/json", n).await?;

    let mut t = Table::new(&["measure", "value", "baseline", "target", ""]);
    t.row(vec![
        "RSS idle (standalone, nothing cached)".into(),
        mib(idle),
        format!("{} (baseline-server idle)", mib(baseline_idle)),
        "—".into(),
        String::new(),
    ]);
    for (what, kib) in [
        ("opaque 4 KB values (key material)", opaque),
        ("4 KB JSON values (`{\"user\",\"password\"}`)", json),
    ] {
        let ok = kib <= 12 * 1024;
        t.row(vec![
            format!("RSS with {n} cached {what}"),
            mib(kib),
            format!("+{} over idle", mib(kib.saturating_sub(idle))),
            if n == 1000 { "≤ 12 MiB".into() } else { "—".into() },
            if n == 1000 { verdict(ok).into() } else { String::new() },
        ]);
    }
    let binary = std::fs::metadata(&tools.sidecar).map(|m| m.len()).unwrap_or(0);
    t.row(vec![
        format!("stripped binary ({})", tools.sidecar.display()),
        format!("{:.2} MB", binary as f64 / 1e6),
        "—".into(),
        "—".into(),
        String::new(),
    ]);
    let zip = harness::venv::repo_root().join("dist/layer.zip");
    match std::fs::metadata(&zip) {
        Ok(m) => t.row(vec![
            "dist/layer.zip (./layer.zip.sh)".into(),
            format!("{:.2} MB", m.len() as f64 / 1e6),
            "—".into(),
            "≤ 5 MB".into(),
            verdict(m.len() <= 5_000_000).into(),
        ]),
        Err(_) => t.row(vec![
            "dist/layer.zip".into(),
            "not built (run ./layer.zip.sh)".into(),
            "—".into(),
            "≤ 5 MB".into(),
            String::new(),
        ]),
    }
    Ok(format!(
        "{}\nRSS is `VmRSS` from `/proc/<pid>/status` after the prefetch settled (`/metrics` confirms every entry cached). Each cached value holds the AWS-shaped JSON answer; the bare value shares that buffer when the secret needs no JSON escaping and is a separate buffer otherwise.\n",
        t.render()
    ))
}
