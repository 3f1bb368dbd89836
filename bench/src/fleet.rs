//! Section 8 — A fleet under an API quota. Lambda scales out by starting many
//! environments at once, each with its own sidecar, all reading the same secrets from
//! one account's quotas. Here: many standalone sidecars started together, each
//! prefetching the same 10 secrets and 3 parameters, against moto behind the fault
//! proxy enforcing AWS-shaped quotas (a token bucket per Secrets Manager operation,
//! one shared by SSM's `GetParameter*`; `ThrottlingException` beyond, see
//! `harness::proxy::Quota` for what AWS documents).
//!
//! Measured, for the default sidecar and for the baseline
//! `SECRETS_SIDECAR_FLEET_SPREAD=off` (no refresh-offset jitter, no retry jitter or
//! backoff growth, the SDK's retries on refreshes, no prefetch retries), one after the
//! other in the same run, each behind a fresh proxy with full buckets: the time until
//! each sidecar holds all 13 values, upstream calls and throttled calls; then each
//! fleet left alone for minutes of 60 s TTLs (standalone sidecars keep prefetched
//! entries warm on a timer): the busiest second per bucket against its quota and the
//! calls throttled; and resident memory per sidecar against one sidecar alone.
//!
//! Manual runs: `FLEET_SIDECARS` (200), `FLEET_MINUTES` (10, the steady state of the
//! default fleet), `FLEET_BASELINE_MINUTES` (the same; 0 measures the baseline's
//! start-up only).

use std::collections::{BTreeMap, HashSet};
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{anyhow, ensure, Context, Result};
use harness::moto::{Moto, ParamType};
use harness::net::{free_port, HttpClient};
use harness::process::Proc;
use harness::proxy::{max_in_window, BucketLog, FaultProxy, Quota, Quotas, SSM_GET_PARAMETERS_BUCKET};
use harness::sidecar::{SidecarBuilder, TOKEN_HEADER};
use tokio::signal::unix::{signal, SignalKind};
use tokio::task::JoinSet;

use crate::memory::{mib, rss};
use crate::report::{median, quantile, verdict, Table};
use crate::Tools;

const SECRETS: usize = 10;
const PARAMETERS: usize = 3;
const VALUES: u64 = (SECRETS + PARAMETERS) as u64;
const SPREAD_VAR: &str = "SECRETS_SIDECAR_FLEET_SPREAD";
const SECOND: Duration = Duration::from_secs(1);
/// File descriptors the bench needs per sidecar: its two output pipes, the readiness
/// connection, and up to 3 upstream connections per service arriving at the proxy,
/// each with its forwarded twin towards moto.
const FDS_PER_SIDECAR: u64 = 16;

struct Settings {
    sidecars: usize,
    quotas: Quotas,
    ttl_secs: u64,
    /// Steady state of the default fleet, and of the baseline.
    steady: Duration,
    baseline_steady: Duration,
    /// A sidecar not holding every value by then counts as never ready.
    ready_deadline: Duration,
    /// How often readiness is polled: the resolution of the start-up times.
    poll: Duration,
}

fn minutes(var: &str, default: f64) -> Result<Duration> {
    let m = match std::env::var(var) {
        Ok(v) => v
            .trim()
            .parse::<f64>()
            .map_err(|_| anyhow!("{var}={v}: expected minutes, e.g. 2 or 0.5"))?,
        Err(_) => default,
    };
    ensure!(m.is_finite() && (0.0..=1440.0).contains(&m), "{var}: 0 to 1440 minutes");
    Ok(Duration::from_secs_f64(m * 60.0))
}

fn settings(smoke: bool) -> Result<Settings> {
    if smoke {
        // A handful of sidecars against quotas scaled down so that they still ask for
        // more than the buckets hold: the throttled path runs, in seconds.
        return Ok(Settings {
            sidecars: 6,
            quotas: Quotas {
                secrets_manager: Quota::per_second(5),
                ssm_get_parameters: Quota::per_second(4),
            },
            ttl_secs: 2,
            steady: Duration::from_secs(2),
            baseline_steady: Duration::ZERO,
            // The sidecar's init timeout: a sidecar whose prefetch gave up and that
            // retries nothing is not waited for longer than its prefetch lasts.
            ready_deadline: Duration::from_secs(5),
            poll: Duration::from_millis(50),
        });
    }
    let sidecars = match std::env::var("FLEET_SIDECARS") {
        Ok(v) => v
            .trim()
            .parse()
            .ok()
            .filter(|n| (1..=2000).contains(n))
            .ok_or_else(|| anyhow!("FLEET_SIDECARS={v}: expected 1 to 2000"))?,
        Err(_) => 200,
    };
    let steady = minutes("FLEET_MINUTES", 10.0)?;
    Ok(Settings {
        sidecars,
        quotas: Quotas {
            secrets_manager: Quota::per_second(50),
            ssm_get_parameters: Quota::per_second(40),
        },
        ttl_secs: 60,
        steady,
        baseline_steady: minutes("FLEET_BASELINE_MINUTES", steady.as_secs_f64() / 60.0)?,
        // Before the first refresh (0.75 × 60 s, plus up to 15% jitter): start-up
        // counts never include steady-state calls.
        ready_deadline: Duration::from_secs(40),
        // 200 sidecars polled every 200 ms is 1,000 small requests a second on a
        // machine that is also running them: finer polling would slow what it times.
        poll: Duration::from_millis(200),
    })
}

/// Raises the soft open-file limit towards the hard one when `needed` is more
/// (children inherit it; the proxy and the readiness polls live in this process).
fn raise_open_files(needed: u64) -> Result<u64> {
    use nix::sys::resource::{getrlimit, setrlimit, Resource};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE)?;
    if soft >= needed {
        return Ok(soft);
    }
    let target = needed.min(hard);
    setrlimit(Resource::RLIMIT_NOFILE, target, hard)?;
    ensure!(
        target >= needed,
        "open files: need {needed}, the hard limit is {hard} (raise it or set FLEET_SIDECARS lower)"
    );
    Ok(target)
}

/// Whether this sidecar build reads the baseline knob at all (an older build would
/// silently run the baseline with spreading on).
fn knows_spread_knob(bin: &Path) -> bool {
    std::fs::read(bin).is_ok_and(|b| b.windows(SPREAD_VAR.len()).any(|w| w == SPREAD_VAR.as_bytes()))
}

struct Member {
    proc: Proc,
    port: u16,
    token: String,
}

/// Sidecars started together; every one is killed when this is dropped (`Proc`),
/// whatever path the section leaves by.
struct Fleet {
    members: Vec<Member>,
    started: Instant,
    /// From the first spawn to the last.
    spawn_span: Duration,
}

impl Fleet {
    fn start(tools: &Tools, n: usize, endpoint: &str, env: &[(&str, String)]) -> Result<Fleet> {
        let mut ports = HashSet::new();
        let mut members = Vec::with_capacity(n);
        let started = Instant::now();
        for _ in 0..n {
            let mut b = SidecarBuilder::new(&tools.sidecar).endpoint(endpoint);
            // A port just released can be handed out again at once; each needs its own.
            while !ports.insert(b.port) {
                b = b.port(free_port());
            }
            for (k, v) in env {
                b = b.var(k, v);
            }
            let proc = b.spawn_raw()?;
            members.push(Member {
                proc,
                port: b.port,
                token: b.token.clone(),
            });
        }
        Ok(Fleet {
            members,
            started,
            spawn_span: started.elapsed(),
        })
    }

    /// When each sidecar was first seen holding all its values (from the first
    /// spawn), `None` for those that did not within `deadline`. `/metrics` is read,
    /// never a value: a poll must not make upstream calls of its own.
    async fn wait_ready(&self, http: &HttpClient, deadline: Duration, poll: Duration) -> Vec<Option<Duration>> {
        let mut tasks = JoinSet::new();
        for (i, m) in self.members.iter().enumerate() {
            let (http, port, token, started) = (http.clone(), m.port, m.token.clone(), self.started);
            tasks.spawn(async move {
                loop {
                    let text = metrics(&http, port, &token).await;
                    if text.as_deref().and_then(|t| series(t, "secrets_sidecar_cache_entries")) == Some(VALUES) {
                        return (i, Some(started.elapsed()));
                    }
                    if started.elapsed() >= deadline {
                        return (i, None);
                    }
                    tokio::time::sleep(poll).await;
                }
            });
        }
        let mut ready = vec![None; self.members.len()];
        while let Some(done) = tasks.join_next().await {
            if let Ok((i, at)) = done {
                ready[i] = at;
            }
        }
        ready
    }

    /// Upstream calls each sidecar says it made (operations, not SDK attempts).
    async fn reported_calls(&self, http: &HttpClient) -> Vec<u64> {
        let mut out = Vec::with_capacity(self.members.len());
        for m in &self.members {
            let text = metrics(http, m.port, &m.token).await.unwrap_or_default();
            out.push(sum_of(&text, "secrets_sidecar_upstream_calls_total{"));
        }
        out
    }

    /// For the sidecars not ready: how many values each holds, and the first warning
    /// one of them logged (why its prefetch fell short).
    async fn shortfall(&self, http: &HttpClient, ready: &[Option<Duration>]) -> (BTreeMap<u64, usize>, String) {
        let mut held = BTreeMap::new();
        let mut why = String::new();
        for (m, r) in self.members.iter().zip(ready) {
            if r.is_some() {
                continue;
            }
            let text = metrics(http, m.port, &m.token).await.unwrap_or_default();
            *held
                .entry(series(&text, "secrets_sidecar_cache_entries").unwrap_or(0))
                .or_insert(0) += 1;
            if why.is_empty() {
                why = m.proc.logs.lines().into_iter().next().unwrap_or_default();
            }
        }
        (held, why)
    }

    /// Resident memory (KiB) of each sidecar still running.
    fn rss(&self) -> Vec<u64> {
        self.members
            .iter()
            .filter_map(|m| rss(m.proc.pid()?).ok().map(|r| r.total))
            .collect()
    }

    /// Sidecars that exited, and the last lines of the first one's output.
    fn exited(&mut self) -> (usize, String) {
        let mut n = 0;
        let mut first = String::new();
        for m in &mut self.members {
            if let Some(status) = m.proc.try_exit() {
                n += 1;
                if first.is_empty() {
                    let lines = m.proc.logs.lines();
                    let tail = lines[lines.len().saturating_sub(3)..].join(" / ");
                    first = format!("{status}: {tail}");
                }
            }
        }
        (n, first)
    }

    /// Kills every sidecar and waits for them, at most 10 s (dropping the fleet would
    /// kill them too, without waiting).
    async fn stop(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(10), async {
            for m in &mut self.members {
                m.proc.kill().await;
            }
        })
        .await;
    }
}

async fn metrics(http: &HttpClient, port: u16, token: &str) -> Option<String> {
    let url = format!("http://127.0.0.1:{port}/metrics");
    let r = http.get(&url, &[(TOKEN_HEADER, token)]).await.ok()?;
    (r.status == 200).then(|| r.text())
}

/// The value of an unlabelled Prometheus series.
fn series(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// The sum of every labelled series starting with `prefix` (e.g. `name{`).
fn sum_of(text: &str, prefix: &str) -> u64 {
    text.lines()
        .filter(|l| l.starts_with(prefix))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
        .sum()
}

/// What the calls that met one bucket did within one phase.
#[derive(Default)]
struct BucketPhase {
    forwarded: usize,
    throttled: usize,
    busiest_forwarded: usize,
    busiest_offered: usize,
}

fn phase(log: &BTreeMap<String, BucketLog>, from: Instant, to: Instant) -> BTreeMap<String, BucketPhase> {
    log.iter()
        .map(|(bucket, l)| {
            let forwarded = l.forwarded_in(from, to);
            let offered = l.offered_in(from, to);
            (
                bucket.clone(),
                BucketPhase {
                    forwarded: forwarded.len(),
                    throttled: offered.len() - forwarded.len(),
                    busiest_forwarded: max_in_window(&forwarded, SECOND),
                    busiest_offered: max_in_window(&offered, SECOND),
                },
            )
        })
        .filter(|(_, p)| p.forwarded + p.throttled > 0)
        .collect()
}

fn quota_of(quotas: &Quotas, bucket: &str) -> Quota {
    if bucket == SSM_GET_PARAMETERS_BUCKET {
        quotas.ssm_get_parameters
    } else {
        quotas.secrets_manager
    }
}

struct Steady {
    duration: Duration,
    buckets: BTreeMap<String, BucketPhase>,
    rss_end: Vec<u64>,
    /// The lone sidecar's, read at the same moment.
    alone_rss_end: u64,
}

struct Run {
    label: String,
    ready: Vec<Option<Duration>>,
    spawn_span: Duration,
    startup: BTreeMap<String, BucketPhase>,
    /// Upstream calls per operation at the proxy during the start-up (attempts).
    startup_calls: BTreeMap<String, u64>,
    reported: Vec<u64>,
    /// Sidecars not ready by the deadline, by values held; a warning one logged.
    short: (BTreeMap<u64, usize>, String),
    rss_ready: Vec<u64>,
    steady: Option<Steady>,
    exited: (usize, String),
}

impl Run {
    fn ready_secs(&self) -> Vec<f64> {
        self.ready.iter().flatten().map(Duration::as_secs_f64).collect()
    }

    fn ready_count(&self) -> usize {
        self.ready.iter().flatten().count()
    }

    fn attempts(&self) -> u64 {
        self.startup_calls.values().sum()
    }

    fn throttled_startup(&self) -> usize {
        self.startup.values().map(|p| p.throttled).sum()
    }
}

struct Scenario<'a> {
    tools: &'a Tools,
    moto: &'a Moto,
    settings: &'a Settings,
    prefetch: String,
    http: HttpClient,
    /// The sidecar running alone through the section (see `measure`).
    alone_pid: Option<u32>,
}

impl Scenario<'_> {
    fn env(&self, spread: bool) -> Vec<(&'static str, String)> {
        let ttl = self.settings.ttl_secs.to_string();
        let mut env = vec![
            ("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "warn".to_owned()),
            ("SECRETS_SIDECAR_PREFETCH", self.prefetch.clone()),
            ("SECRETS_MANAGER_TTL", ttl.clone()),
            ("SSM_PARAMETER_STORE_TTL", ttl),
        ];
        if !spread {
            env.push((SPREAD_VAR, "off".to_owned()));
        }
        env
    }

    /// One fleet: start-up, then `steady` left alone, behind a fresh proxy.
    async fn fleet(&self, spread: bool, steady: Duration) -> Result<Run> {
        let s = self.settings;
        let proxy = FaultProxy::start(self.moto.port).await?;
        proxy.enforce(s.quotas);
        let mut fleet = Fleet::start(self.tools, s.sidecars, &proxy.endpoint(), &self.env(spread))?;
        let ready = fleet.wait_ready(&self.http, s.ready_deadline, s.poll).await;
        let startup_end = Instant::now();
        let startup_calls: BTreeMap<String, u64> = proxy.counts().into_iter().collect();
        let startup = phase(&proxy.quota_log(), fleet.started, startup_end);
        let reported = fleet.reported_calls(&self.http).await;
        let short = fleet.shortfall(&self.http, &ready).await;
        let rss_ready = fleet.rss();
        let steady = if steady.is_zero() {
            None
        } else {
            let minutes = (steady.as_secs() / 60).max(1);
            for m in 0..minutes {
                tokio::time::sleep(steady / minutes as u32).await;
                if steady >= Duration::from_secs(120) {
                    eprintln!("fleet: steady state, {} of {minutes} min", m + 1);
                }
            }
            let end = Instant::now();
            Some(Steady {
                duration: end - startup_end,
                buckets: phase(&proxy.quota_log(), startup_end, end),
                rss_end: fleet.rss(),
                alone_rss_end: self.alone_pid.and_then(|p| rss(p).ok()).map_or(0, |r| r.total),
            })
        };
        let exited = fleet.exited();
        let spawn_span = fleet.spawn_span;
        fleet.stop().await;
        Ok(Run {
            label: if spread {
                format!("{} sidecars, default (spread)", s.sidecars)
            } else {
                format!("{} sidecars, `{SPREAD_VAR}=off` (baseline)", s.sidecars)
            },
            ready,
            spawn_span,
            startup,
            startup_calls,
            reported,
            short,
            rss_ready,
            steady,
            exited,
        })
    }
}

pub async fn run(tools: &Tools, smoke: bool) -> Result<String> {
    // An interrupted bench must not leave hundreds of sidecars behind: on SIGINT or
    // SIGTERM the section's future is dropped, and with it every fleet (kill on drop).
    let mut int = signal(SignalKind::interrupt())?;
    let mut term = signal(SignalKind::terminate())?;
    tokio::select! {
        r = measure(tools, smoke) => r,
        _ = int.recv() => Err(anyhow!("interrupted (SIGINT); every sidecar killed")),
        _ = term.recv() => Err(anyhow!("terminated (SIGTERM); every sidecar killed")),
    }
}

async fn measure(tools: &Tools, smoke: bool) -> Result<String> {
    let s = settings(smoke)?;
    let open_files = raise_open_files(s.sidecars as u64 * FDS_PER_SIDECAR + 256)?;
    let moto = Moto::start().await?;
    let mut refs = Vec::new();
    for i in 0..SECRETS {
        let name = format!("fleet/service-{i:02}");
        let value = serde_json::json!({ "user": format!("svc{i}"), "password": format!("{:0>32}", i * 7919) });
        moto.create_secret(&name, &value.to_string()).await?;
        refs.push(format!("secretsmanager:{name}"));
    }
    for i in 0..PARAMETERS {
        let name = format!("/fleet/config-{i}");
        moto.put_parameter(&name, &format!("value-{i}"), ParamType::SecureString)
            .await?;
        refs.push(format!("ssm:{name}"));
    }
    let knob = knows_spread_knob(&tools.sidecar);
    let scenario = Scenario {
        tools,
        moto: &moto,
        settings: &s,
        prefetch: refs.join(","),
        http: HttpClient::new(),
        alone_pid: None,
    };

    // One sidecar alone, straight to moto (no quota, nobody else starting): the
    // reference for start-up time and memory. It keeps running, so its memory can be
    // read again after the same minutes of refreshes as the fleets'.
    let mut alone = Fleet::start(tools, 1, &moto.endpoint(), &scenario.env(true))?;
    let alone_ready = alone
        .wait_ready(&scenario.http, Duration::from_secs(20), Duration::from_millis(10))
        .await;
    let alone_ready = alone_ready[0].ok_or_else(|| {
        anyhow!(
            "a sidecar alone did not hold its {VALUES} values within 20 s: {}",
            alone.exited().1
        )
    })?;
    let alone_rss = alone.rss().first().copied().context("the lone sidecar has gone")?;
    let scenario = Scenario {
        alone_pid: alone.members[0].proc.pid(),
        ..scenario
    };

    let subject = scenario.fleet(true, s.steady).await?;
    let baseline = scenario.fleet(false, s.baseline_steady).await?;
    alone.stop().await;

    Ok(render(
        &s,
        &tools.sidecar,
        &[&subject, &baseline],
        (alone_ready, alone_rss),
        knob,
        open_files,
    ))
}

fn secs(d: f64) -> String {
    if d.is_nan() {
        "—".into()
    } else {
        format!("{d:.2} s")
    }
}

/// Per bucket: busiest second forwarded (offered), against the quota.
fn busiest(buckets: &BTreeMap<String, BucketPhase>, quotas: &Quotas) -> String {
    buckets
        .iter()
        .map(|(b, p)| {
            format!(
                "{b}: {} ({} offered) of {}/s",
                p.busiest_forwarded,
                p.busiest_offered,
                quota_of(quotas, b).rate
            )
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn ratio(a: f64, b: f64) -> String {
    if b > 0.0 && a.is_finite() && b.is_finite() {
        format!("{:.2}×", a / b)
    } else {
        "—".into()
    }
}

fn render(s: &Settings, bin: &Path, runs: &[&Run], alone: (Duration, u64), knob: bool, open_files: u64) -> String {
    let (alone_ready, alone_rss) = alone;
    let n = s.sidecars;
    // The quota alone sets a floor: each sidecar needs one BatchGetSecretValue and one
    // GetParameters; beyond a full bucket they go through at the refill rate.
    let floor = [s.quotas.secrets_manager, s.quotas.ssm_get_parameters]
        .iter()
        .map(|q| (n as f64 - f64::from(q.burst)).max(0.0) / q.rate)
        .fold(0.0, f64::max);

    let mut start = Table::new(&[
        "fleet",
        "ready (all 13 values)",
        "time to ready p50 / p99 / max",
        "upstream attempts per sidecar (at the proxy)",
        "calls per sidecar (its own count) p50 / max",
        "throttled",
        "busiest second per bucket: forwarded (offered)",
    ]);
    start.row(vec![
        "one sidecar alone, no quota (reference)".into(),
        "1 of 1".into(),
        secs(alone_ready.as_secs_f64()),
        "2 (one BatchGetSecretValue, one GetParameters)".into(),
        "—".into(),
        "0".into(),
        "—".into(),
    ]);
    for r in runs {
        let mut ready = r.ready_secs();
        let mut reported: Vec<f64> = r.reported.iter().map(|c| *c as f64).collect();
        let by_op = r
            .startup_calls
            .iter()
            .map(|(op, c)| format!("{op} {c}"))
            .collect::<Vec<_>>()
            .join(", ");
        start.row(vec![
            r.label.clone(),
            format!("{} of {n}", r.ready_count()),
            format!(
                "{} / {} / {}",
                secs(quantile(&mut ready, 0.5)),
                secs(quantile(&mut ready, 0.99)),
                secs(ready.iter().copied().fold(f64::NAN, f64::max))
            ),
            format!("{:.2} ({by_op})", r.attempts() as f64 / n as f64),
            format!(
                "{:.0} / {:.0}",
                median(&mut reported),
                reported.iter().copied().fold(0.0, f64::max)
            ),
            r.throttled_startup().to_string(),
            busiest(&r.startup, &s.quotas),
        ]);
    }

    let (subject, baseline) = (runs[0], runs[1]);
    let p99 = |r: &Run| quantile(&mut r.ready_secs(), 0.99);
    let max = |r: &Run| r.ready_secs().into_iter().fold(f64::NAN, f64::max);
    let mut compare = Table::new(&["start-up, baseline against default", "ratio"]);
    compare.row(vec![
        "time to ready, p99 (of those ready)".into(),
        ratio(p99(baseline), p99(subject)),
    ]);
    compare.row(vec![
        "upstream attempts".into(),
        ratio(baseline.attempts() as f64, subject.attempts() as f64),
    ]);
    compare.row(vec![
        "throttled calls".into(),
        ratio(baseline.throttled_startup() as f64, subject.throttled_startup() as f64),
    ]);
    compare.row(vec![
        "default fleet's slowest start-up against the floor the quota sets".into(),
        format!(
            "{} / {} = {}",
            secs(max(subject)),
            secs(floor),
            ratio(max(subject), floor)
        ),
    ]);

    let mut steady = Table::new(&[
        "fleet",
        "left alone for",
        "calls per sidecar per TTL",
        "busiest second per bucket: forwarded (offered) of quota",
        "throttled",
        "target: busiest ≤ quota, 0 throttled",
    ]);
    let mut targets_met = true;
    for r in runs {
        let Some(st) = &r.steady else {
            steady.row(vec![
                r.label.clone(),
                "not run (`FLEET_BASELINE_MINUTES=0`, or a smoke run)".into(),
                "—".into(),
                "—".into(),
                "—".into(),
                String::new(),
            ]);
            continue;
        };
        let calls: usize = st.buckets.values().map(|p| p.forwarded + p.throttled).sum();
        let throttled: usize = st.buckets.values().map(|p| p.throttled).sum();
        let within = st
            .buckets
            .iter()
            .all(|(b, p)| p.busiest_forwarded as f64 <= quota_of(&s.quotas, b).rate);
        let met = within && throttled == 0;
        if std::ptr::eq(*r, subject) {
            targets_met = met;
        }
        steady.row(vec![
            r.label.clone(),
            format!("{:.1} min", st.duration.as_secs_f64() / 60.0),
            format!(
                "{:.2}",
                calls as f64 / n as f64 / (st.duration.as_secs_f64() / s.ttl_secs as f64)
            ),
            busiest(&st.buckets, &s.quotas),
            throttled.to_string(),
            verdict(met).into(),
        ]);
    }

    let mut memory = Table::new(&["resident memory (VmRSS)", "p50", "max", "p50 / alone", "max / alone"]);
    memory.row(vec![
        "one sidecar alone, all values held".into(),
        mib(alone_rss),
        mib(alone_rss),
        "1.00×".into(),
        "1.00×".into(),
    ]);
    let mem_row = |t: &mut Table, what: String, kib: &[u64], reference: u64| {
        let mut v: Vec<f64> = kib.iter().map(|k| *k as f64).collect();
        let p50 = median(&mut v);
        let top = v.iter().copied().fold(0.0, f64::max);
        t.row(vec![
            what,
            mib(p50 as u64),
            mib(top as u64),
            ratio(p50, reference as f64),
            ratio(top, reference as f64),
        ]);
        p50 / reference as f64
    };
    let mut memory_ratio = f64::NAN;
    for r in runs {
        let p = mem_row(
            &mut memory,
            format!("{}, after start-up", r.label),
            &r.rss_ready,
            alone_rss,
        );
        if std::ptr::eq(*r, subject) {
            memory_ratio = p;
        }
        if let Some(st) = &r.steady {
            memory.row(vec![
                "one sidecar alone, at the same moment".into(),
                mib(st.alone_rss_end),
                mib(st.alone_rss_end),
                ratio(st.alone_rss_end as f64, alone_rss as f64),
                String::new(),
            ]);
            mem_row(
                &mut memory,
                format!("{}, after the steady state", r.label),
                &st.rss_end,
                st.alone_rss_end,
            );
        }
    }

    let mut targets = Table::new(&["target", "measured", ""]);
    targets.row(vec![
        "every sidecar of the default fleet holds its values".into(),
        format!(
            "{} of {n} within {} s",
            subject.ready_count(),
            s.ready_deadline.as_secs()
        ),
        verdict(subject.ready_count() == n).into(),
    ]);
    targets.row(vec![
        "steady state (default fleet): busiest second ≤ quota, 0 throttled".into(),
        subject
            .steady
            .as_ref()
            .map_or("not run".into(), |st| busiest(&st.buckets, &s.quotas)),
        verdict(subject.steady.is_some() && targets_met).into(),
    ]);
    targets.row(vec![
        "memory per sidecar within the single-sidecar figure (p50 ≤ 1.10×)".into(),
        format!("{memory_ratio:.2}× after start-up"),
        verdict(memory_ratio <= 1.10).into(),
    ]);

    let mut notes = String::new();
    if !knob {
        notes.push_str(&format!(
            "\n**This sidecar build does not read `{SPREAD_VAR}`**: the baseline ran with the same behaviour as the default fleet, so the two rows differ by noise only.\n"
        ));
    }
    for r in runs {
        if !r.short.0.is_empty() {
            let held = r
                .short
                .0
                .iter()
                .map(|(values, n)| format!("{n} holding {values}"))
                .collect::<Vec<_>>()
                .join(", ");
            notes.push_str(&format!(
                "\n{}: not ready within {} s: {held} of {VALUES} values. The first line one of them logged: `{}`\n",
                r.label,
                s.ready_deadline.as_secs(),
                r.short.1
            ));
        }
        if r.exited.0 > 0 {
            notes.push_str(&format!(
                "\n{}: {} sidecars exited early (first: {}).\n",
                r.label, r.exited.0, r.exited.1
            ));
        }
    }
    let baseline_steady = if baseline.steady.is_some() {
        "Each fleet is then left alone"
    } else {
        "The default fleet is then left alone (the baseline's steady state was not run)"
    };
    format!(
        "{}\n{}\n{}\n{}\n{}\n{notes}\n{n} standalone sidecars (`{bin}`, log level warn) started at once, each on its own port with `SECRETS_SIDECAR_PREFETCH` of the same {SECRETS} secrets and {PARAMETERS} SSM SecureStrings (one function's environments), TTL {ttl} s (`SECRETS_MANAGER_TTL`, `SSM_PARAMETER_STORE_TTL`), refresh-ahead at the default 0.75 of the TTL, init timeout at its default; spawning them took {span:.2} s. Upstream is moto behind the fault proxy (`tests/src/proxy.rs`) enforcing {sm} calls/s per Secrets Manager operation and {ssm} calls/s shared by SSM's GetParameter, GetParameters and GetParametersByPath, token buckets one second deep (AWS documents per-second quotas and no burst), answering `ThrottlingException` (HTTP 400) beyond. Each fleet gets a fresh proxy with full buckets. \"Ready\" is the first poll (every {poll} ms, so that is the resolution) at which a sidecar's `/metrics` gauge `secrets_sidecar_cache_entries` reads {VALUES}; times count from the first spawn. Attempts are what reached the proxy (SDK retries included); each sidecar's own count (`secrets_sidecar_upstream_calls_total`) counts operations. \"Offered\" counts every call that reached a bucket, forwarded or throttled: what the fleet asked for. With a one-second bucket the proxy can forward up to twice the rate in a one-second window (a full bucket plus a second of refill), so the steady-state target is checked on what was forwarded. {baseline_steady} for the minutes shown, no requests made: the sidecars' timers refresh every prefetched entry ahead of expiry. The floor is ({n} − bucket depth) / rate for the tighter bucket: no fleet can be ready sooner. One sidecar alone (straight to moto, running through the whole section) is the reference for time and memory. Open-file limit for this run: {open_files}.\n",
        start.render(),
        compare.render(),
        steady.render(),
        memory.render(),
        targets.render(),
        ttl = s.ttl_secs,
        span = subject.spawn_span.as_secs_f64(),
        sm = s.quotas.secrets_manager.rate,
        ssm = s.quotas.ssm_get_parameters.rate,
        poll = s.poll.as_millis(),
        bin = crate::report::shown_binary(bin),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prometheus_series_are_read_exactly() {
        let text = "# HELP secrets_sidecar_cache_entries x\n# TYPE secrets_sidecar_cache_entries gauge\nsecrets_sidecar_cache_entries 13\nsecrets_sidecar_cache_entries_total 99\nsecrets_sidecar_upstream_calls_total{api=\"BatchGetSecretValue\"} 2\nsecrets_sidecar_upstream_calls_total{api=\"GetParameters\"} 3\n";
        assert_eq!(series(text, "secrets_sidecar_cache_entries"), Some(13));
        assert_eq!(series(text, "secrets_sidecar_missing"), None);
        assert_eq!(sum_of(text, "secrets_sidecar_upstream_calls_total{"), 5);
    }
}
