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

/// Resident memory of a process, in KiB: total, anonymous (private heap and
/// stacks), and file-backed (the executable's and libraries' pages).
#[derive(Clone, Copy)]
pub struct Rss {
    pub total: u64,
    pub anon: u64,
    pub file: u64,
}

pub fn rss(pid: u32) -> Result<Rss> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let field = |name: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
            .ok_or_else(|| anyhow!("no {name} for {pid}"))
    };
    Ok(Rss {
        total: field("VmRSS:")?,
        anon: field("RssAnon:")?,
        file: field("RssFile:")?,
    })
}

/// The largest resident mappings of a process (from `/proc/<pid>/smaps`).
fn top_mappings(pid: u32, n: usize) -> String {
    let Ok(smaps) = std::fs::read_to_string(format!("/proc/{pid}/smaps")) else {
        return String::new();
    };
    let mut current = String::new();
    let mut rows: Vec<(u64, String)> = Vec::new();
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            let parts: Vec<&str> = line.split_whitespace().collect();
            let name = parts.get(5).map_or("[anonymous]", |n| n);
            let name = std::path::Path::new(name)
                .file_name()
                .map_or(name.to_owned(), |f| f.to_string_lossy().into_owned());
            current = format!("{name} ({})", parts.get(1).unwrap_or(&""));
        } else if let Some(v) = line.strip_prefix("Rss:") {
            let kib: u64 = v.split_whitespace().next().and_then(|x| x.parse().ok()).unwrap_or(0);
            rows.push((kib, current.clone()));
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    rows.iter()
        .take(n)
        .map(|(k, name)| format!("{k:>6} KiB  {name}"))
        .collect::<Vec<_>>()
        .join("\n")
}

pub fn mib(kib: u64) -> String {
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

async fn cached_rss(
    tools: &Tools,
    moto: &Moto,
    prefix: &str,
    n: usize,
    extra: &[(&str, &str)],
) -> Result<(Rss, String)> {
    let refs: Vec<String> = (0..n).map(|i| format!("secretsmanager:{prefix}/{i}")).collect();
    let mut b = SidecarBuilder::new(&tools.sidecar);
    for (k, v) in extra {
        b = b.var(k, v);
    }
    let sc = b
        .endpoint(&moto.endpoint())
        .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
        .var("SECRETS_SIDECAR_PREFETCH", &refs.join(","))
        .var("SECRETS_SIDECAR_INIT_TIMEOUT_MILLIS", "9000")
        .spawn()
        .await?;
    let entries = sc.metric("secrets_sidecar_cache_entries").await?;
    anyhow::ensure!(entries as usize == n, "{entries} of {n} cached");
    let pid = sc.proc.pid().ok_or_else(|| anyhow!("sidecar gone"))?;
    Ok((rss(pid)?, top_mappings(pid, 8)))
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
        rss(sc.proc.pid().ok_or_else(|| anyhow!("sidecar gone"))?)?
    };
    let baseline_idle = {
        let port = free_port();
        let mut cmd = tokio::process::Command::new(&tools.baseline);
        cmd.arg(port.to_string()).arg("/dev/null");
        let p = Proc::spawn("baseline", cmd)?;
        p.logs
            .wait_for(Duration::from_secs(5), |l| l.starts_with("listening"))
            .await?;
        rss(p.pid().ok_or_else(|| anyhow!("baseline gone"))?)?
    };
    let (opaque, mappings) = cached_rss(tools, &moto, "bench/mem/opaque", n, &[]).await?;
    let (json, _) = cached_rss(tools, &moto, "bench/mem/json", n, &[]).await?;
    let (one_arena, _) = cached_rss(tools, &moto, "bench/mem/opaque", n, &[("MALLOC_ARENA_MAX", "1")]).await?;
    // What a function under 1,769 MB runs by default: the single-threaded runtime.
    let one_thread = [("SECRETS_SIDECAR_WORKER_THREADS", "1")];
    let (single, _) = cached_rss(tools, &moto, "bench/mem/opaque", n, &one_thread).await?;
    let single_idle = {
        let sc = SidecarBuilder::new(&tools.sidecar)
            .endpoint(&moto.endpoint())
            .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn")
            .var("SECRETS_SIDECAR_WORKER_THREADS", "1")
            .spawn()
            .await?;
        rss(sc.proc.pid().ok_or_else(|| anyhow!("sidecar gone"))?)?
    };

    let mut t = Table::new(&[
        "measure",
        "RSS",
        "of which private (anon)",
        "of which file pages",
        "target (RSS)",
        "",
    ]);
    // Targets in KiB of RSS: idle at most 7 MiB, 1,000 cached 4 KB values at most 12 MiB.
    let row = |t: &mut Table, what: String, r: Rss, target: Option<u64>| {
        t.row(vec![
            what,
            mib(r.total),
            mib(r.anon),
            mib(r.file),
            target.map_or("—".into(), |k| format!("≤ {} MiB", k / 1024)),
            target.map_or(String::new(), |k| verdict(r.total <= k).into()),
        ]);
    };
    let loaded = (n == 1000).then_some(12 * 1024);
    row(
        &mut t,
        "idle (standalone, two workers, nothing cached)".into(),
        idle,
        Some(7 * 1024),
    );
    row(
        &mut t,
        "idle, one thread (a function under 1,769 MB), nothing cached".into(),
        single_idle,
        Some(7 * 1024),
    );
    row(&mut t, "baseline-server, idle (the floor)".into(), baseline_idle, None);
    row(
        &mut t,
        format!("{n} cached opaque 4 KB values (key material), two workers"),
        opaque,
        loaded,
    );
    row(
        &mut t,
        format!("{n} cached opaque 4 KB values, one thread (a function under 1,769 MB)"),
        single,
        loaded,
    );
    row(
        &mut t,
        format!("{n} cached 4 KB JSON values (`{{\"user\",\"password\"}}`)"),
        json,
        loaded,
    );
    row(
        &mut t,
        format!("{n} cached opaque values, two workers with `MALLOC_ARENA_MAX=1`"),
        one_arena,
        None,
    );

    let mut sizes = Table::new(&["artifact", "size", "target", ""]);
    let binary = std::fs::metadata(&tools.sidecar).map(|m| m.len()).unwrap_or(0);
    sizes.row(vec![
        format!("stripped binary (`{}`)", crate::report::shown_binary(&tools.sidecar)),
        format!("{:.2} MB", binary as f64 / 1e6),
        "—".into(),
        String::new(),
    ]);
    let zip = harness::venv::repo_root().join("dist/layer.zip");
    match std::fs::metadata(&zip) {
        Ok(m) => sizes.row(vec![
            "`dist/layer.zip` (`./layer.zip.sh`)".into(),
            format!("{:.2} MB", m.len() as f64 / 1e6),
            "≤ 4 MB".into(),
            verdict(m.len() <= 4_000_000).into(),
        ]),
        Err(_) => sizes.row(vec![
            "`dist/layer.zip`".into(),
            "not built (run ./layer.zip.sh)".into(),
            "≤ 4 MB".into(),
            String::new(),
        ]),
    }
    Ok(format!(
        "{}\n{}\nRSS is `VmRSS` (split into `RssAnon` and `RssFile`) from `/proc/<pid>/status` after the prefetch settled (`/metrics` confirms every entry cached). Private memory is what the sidecar itself holds: each cached value keeps its AWS-shaped JSON answer in a buffer of exactly its size, and the bare value shares that buffer when the secret needs no JSON escaping. File pages are the executable's and libc's code, clean and shared with the page cache; the executable is mostly the AWS SDK, and the kernel maps its code in 64 KiB runs as start-up touches it. glibc's per-thread malloc arenas (one per busy worker thread) keep freed transient buffers of the batch responses; the `MALLOC_ARENA_MAX=1` row measures what that costs, and the one-thread rows what a function under 1,769 MB runs by default (`SECRETS_SIDECAR_WORKER_THREADS`: less than a vCPU, so one thread, one arena, one stack). Standalone rows run two workers, as on this machine's 2 CPUs. Largest mappings with {n} opaque values cached (`/proc/<pid>/smaps`):\n\n```\n{mappings}\n```\n",
        t.render(),
        sizes.render()
    ))
}
