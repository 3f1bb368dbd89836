//! Section 7 — Where the time goes: instructions per cache hit, counted by callgrind (`perf`
//! counters are not available on this kind of machine), for the sidecar and for the
//! minimal hyper server. Instruction counts are repeatable whatever else the machine
//! does, so the gap between the two is measured exactly. Each program runs twice under
//! callgrind, with 0 and with N requests on one keep-alive connection; the difference
//! divided by N is the cost of one request; the same difference per function shows
//! where the sidecar's extra instructions go.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};
use harness::moto::Moto;
use harness::net::{free_port, HttpClient};
use harness::process::Proc;
use harness::sidecar::TOKEN_HEADER;

use crate::report::Table;
use crate::Tools;

fn have_valgrind() -> bool {
    Command::new("valgrind")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// The `totals:` (or `summary:`) instruction count of a callgrind output file.
pub fn total_instructions(file: &Path) -> Result<u64> {
    let text = std::fs::read_to_string(file)?;
    text.lines()
        .find_map(|l| l.strip_prefix("totals:").or_else(|| l.strip_prefix("summary:")))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .ok_or_else(|| anyhow!("no totals in {}", file.display()))
}

struct Run<'a> {
    bin: &'a Path,
    args: Vec<String>,
    env: Vec<(String, String)>,
    port: u16,
    path: &'a str,
    token: Option<&'a str>,
}

async fn callgrind(run: &Run<'_>, requests: usize, out: &Path) -> Result<u64> {
    // Pinned to one CPU: tokio then runs one worker, and no request's count depends on
    // which of two workers woke for it (with two, the same 2,000 hits measured 14,575
    // and 15,537 instructions each in two runs; pinned, the runs agree).
    let mut cmd = tokio::process::Command::new("taskset");
    cmd.args(["--cpu-list", "0", "valgrind", "--tool=callgrind"])
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(run.bin)
        .args(&run.args)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default());
    for (k, v) in &run.env {
        cmd.env(k, v);
    }
    let mut proc = Proc::spawn("callgrind", cmd)?;
    let http = HttpClient::new();
    let url = format!("http://127.0.0.1:{}{}", run.port, run.path);
    let headers: Vec<(&str, &str)> = run.token.map(|t| vec![(TOKEN_HEADER, t)]).unwrap_or_default();
    // Under valgrind start-up is slow: wait until it answers (the ping is not counted
    // differently between the two runs, both make it).
    let started = Instant::now();
    loop {
        if http.get(&url, &headers).await.is_ok_and(|r| r.status == 200) {
            break;
        }
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(120),
            "not answering under valgrind"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    for _ in 0..requests {
        let r = http.get(&url, &headers).await?;
        anyhow::ensure!(r.status == 200, "status {}", r.status);
    }
    proc.signal("TERM").await?;
    proc.wait_exit(Duration::from_secs(60)).await?;
    total_instructions(out)
}

/// Self cost per function (`callgrind_annotate --inclusive=no`, every function).
fn self_costs(file: &Path) -> std::collections::HashMap<String, u64> {
    let out = Command::new("callgrind_annotate")
        .args(["--inclusive=no", "--threshold=100", "--auto=no"])
        .arg(file)
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default();
    let mut costs = std::collections::HashMap::new();
    for line in text.lines().skip_while(|l| !l.contains("file:function")).skip(1) {
        // "1,234 ( 5.67%)  file:function [object]"
        let line = line.trim();
        let Some((count, rest)) = line.split_once(' ') else {
            continue;
        };
        let Ok(count) = count.replace(',', "").parse::<u64>() else {
            continue;
        };
        let name = rest.split_once(")").map_or(rest, |(_, n)| n).trim();
        *costs.entry(short_name(name)).or_insert(0) += count;
    }
    costs
}

/// The function of a `file:function [object]` line (callgrind names the file of the
/// inlined code, so one function appears under several files: they are summed).
fn short_name(name: &str) -> String {
    let name = name.rsplit_once(" [").map_or(name, |(n, _)| n);
    // File paths hold no ':'; the first one ends the file.
    name.split_once(':').map_or(name, |(_, f)| f).to_owned()
}

/// Each function's self cost with `n` requests minus without, per request.
fn per_request(zero: &Path, many: &Path, n: usize) -> std::collections::HashMap<String, f64> {
    let base = self_costs(zero);
    self_costs(many)
        .into_iter()
        .map(|(f, c)| {
            let extra = c.saturating_sub(base.get(&f).copied().unwrap_or(0));
            (f, extra as f64 / n as f64)
        })
        .filter(|(_, c)| *c >= 1.0)
        .collect()
}

/// The sidecar's costliest functions per request next to the baseline's cost for the
/// same function (hyper, tokio and libc are shared; the rest is the sidecar's own).
fn profile_table(
    sidecar: &std::collections::HashMap<String, f64>,
    baseline: &std::collections::HashMap<String, f64>,
    lines: usize,
) -> String {
    let mut rows: Vec<(&String, f64)> = sidecar.iter().map(|(f, c)| (f, *c)).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut t = Table::new(&["function", "sidecar instr / request", "baseline instr / request"]);
    for (f, c) in rows.into_iter().take(lines) {
        let shown: String = f.chars().take(110).collect();
        let b = baseline.get(f).map_or("—".to_owned(), |b| format!("{b:.0}"));
        t.row(vec![format!("`{shown}`"), format!("{c:.0}"), b]);
    }
    t.render()
}

/// The request both the sidecar and the baseline answer: a prefetched 1 KB secret.
const PROFILE_PATH: &str = "/secretsmanager/get?secretId=bench/profile";
const PROFILE_TOKEN: &str = "profile-token";

pub async fn create_profiled_secret(moto: &Moto) -> Result<()> {
    let value = serde_json::json!({ "username": "app", "password": "p".repeat(900) }).to_string();
    moto.create_secret("bench/profile", &value).await.map(drop)
}

/// The sidecar standalone, log level info, the profiled secret prefetched.
fn sidecar_run<'a>(bin: &'a Path, moto: &Moto) -> Run<'a> {
    let port = free_port();
    Run {
        bin,
        args: vec![],
        env: vec![
            ("AWS_ENDPOINT_URL".into(), moto.endpoint()),
            ("AWS_REGION".into(), "us-east-1".into()),
            ("AWS_ACCESS_KEY_ID".into(), "x".into()),
            ("AWS_SECRET_ACCESS_KEY".into(), "x".into()),
            ("AWS_EC2_METADATA_DISABLED".into(), "true".into()),
            ("HOME".into(), "/nonexistent".into()),
            ("SECRETS_SIDECAR_TOKEN".into(), PROFILE_TOKEN.into()),
            ("SECRETS_SIDECAR_PREFETCH".into(), "secretsmanager:bench/profile".into()),
            ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT".into(), port.to_string()),
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL".into(), "info".into()),
        ],
        port,
        path: PROFILE_PATH,
        token: Some(PROFILE_TOKEN),
    }
}

/// Instructions of one program's start and stop, of the same with `n` hits, and per hit.
pub struct PerHit {
    pub zero: u64,
    pub many: u64,
    pub per_hit: f64,
}

async fn per_hit(run: &Run<'_>, n: usize, zero_out: &Path, many_out: &Path) -> Result<PerHit> {
    let zero = callgrind(run, 0, zero_out).await?;
    let many = callgrind(run, n, many_out).await?;
    Ok(PerHit {
        zero,
        many,
        per_hit: many.saturating_sub(zero) as f64 / n as f64,
    })
}

/// The sidecar binary `bin`'s instructions per warm extension-API hit (for the guard),
/// against `moto` holding the profiled secret ([`create_profiled_secret`]), with
/// callgrind's files in `dir`.
pub async fn sidecar_per_hit(bin: &Path, moto: &Moto, dir: &Path, n: usize) -> Result<PerHit> {
    anyhow::ensure!(have_valgrind(), "valgrind is not installed (Debian's `valgrind`)");
    let run = sidecar_run(bin, moto);
    per_hit(&run, n, &dir.join("sidecar.0.out"), &dir.join("sidecar.n.out")).await
}

pub async fn run(tools: &Tools, smoke: bool) -> Result<String> {
    if !have_valgrind() {
        return Ok("valgrind is not installed (Debian's `valgrind`): no profile this run.\n".into());
    }
    let n = if smoke { 20 } else { 2000 };
    let dir = std::env::temp_dir().join(format!("bench-callgrind-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let moto = Moto::start().await?;
    create_profiled_secret(&moto).await?;
    let sidecar_bin: PathBuf = tools.profiling_sidecar.clone().unwrap_or_else(|| tools.sidecar.clone());
    let baseline_bin: PathBuf = tools
        .profiling_baseline
        .clone()
        .unwrap_or_else(|| tools.baseline.clone());
    let path = PROFILE_PATH;
    let sidecar = sidecar_run(&sidecar_bin, &moto);
    let body = {
        // The ceiling answers exactly what the sidecar answers.
        let file = dir.join("body.json");
        let probe = harness::sidecar::SidecarBuilder::new(&tools.sidecar)
            .endpoint(&moto.endpoint())
            .var("SECRETS_SIDECAR_PREFETCH", "secretsmanager:bench/profile")
            .spawn()
            .await?;
        std::fs::write(&file, &probe.get(path).await?.body)?;
        file
    };
    let bl_port = free_port();
    let baseline = Run {
        bin: &baseline_bin,
        args: vec![bl_port.to_string(), body.display().to_string()],
        env: vec![],
        port: bl_port,
        path,
        // The same request bytes as the sidecar gets (the baseline ignores the token).
        token: Some(PROFILE_TOKEN),
    };
    let mut t = Table::new(&[
        "program",
        "instructions, start + stop",
        format!("… + {n} hits").as_str(),
        "per request",
        "ratio",
    ]);
    let mut per = Vec::new();
    for (name, run) in [("secrets-sidecar", &sidecar), ("baseline-server", &baseline)] {
        let PerHit {
            zero,
            many,
            per_hit: each,
        } = per_hit(
            run,
            n,
            &dir.join(format!("{name}.0.out")),
            &dir.join(format!("{name}.n.out")),
        )
        .await?;
        per.push(each);
        t.row(vec![
            name.into(),
            zero.to_string(),
            many.to_string(),
            format!("{each:.0}"),
            String::new(),
        ]);
    }
    if let [s, b] = per[..] {
        t.row(vec![
            "sidecar / baseline".into(),
            String::new(),
            String::new(),
            String::new(),
            format!("{:.2}×", s / b),
        ]);
    }
    let top = profile_table(
        &per_request(
            &dir.join("secrets-sidecar.0.out"),
            &dir.join("secrets-sidecar.n.out"),
            n,
        ),
        &per_request(
            &dir.join("baseline-server.0.out"),
            &dir.join("baseline-server.n.out"),
            n,
        ),
        30,
    );
    let symbols = if tools.profiling_sidecar.is_some() {
        "built with `--profile profiling` (the release profile with symbols kept)"
    } else {
        "release build without symbols (build `--profile profiling` for function names)"
    };
    let _ = std::fs::remove_dir_all(&dir);
    Ok(format!(
        "{}\nCommand: `taskset --cpu-list 0 valgrind --tool=callgrind --callgrind-out-file=F <binary>` (one CPU, so one tokio worker and counts that repeat to a few instructions), requests sent one after another on one keep-alive connection, then SIGTERM; per request = (instructions with {n} requests − instructions with none) / {n}. Binaries {symbols}.\n\nWhere one request's instructions go: each function's self cost (`callgrind_annotate --inclusive=no --auto=no --threshold=100`, summed over the files its code was inlined from) with {n} requests minus without, divided by {n}; the sidecar's top 30 next to the same function in the baseline:\n\n{top}",
        t.render()
    ))
}
