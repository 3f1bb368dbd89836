//! Counters for `/metrics` (Prometheus text format) and the shutdown summary line.
//!
//! Relaxed atomics and no locks. The counters every request bumps are split into
//! per-thread shards on separate cache lines ([`Counter`]), so worker threads do not
//! bounce one line between cores; reading sums the shards. Counts are exact; only
//! their ordering relative to each other is not.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter sharded by thread.
#[derive(Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard() -> usize {
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS);
        }
        s.get()
    })
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

use crate::backend::ErrorKind;

/// Upstream API operations, for per-API call counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Api {
    GetSecretValue,
    BatchGetSecretValue,
    GetParameter,
    GetParameters,
    GetParametersByPath,
}

impl Api {
    pub const ALL: [Api; 5] = [
        Api::GetSecretValue,
        Api::BatchGetSecretValue,
        Api::GetParameter,
        Api::GetParameters,
        Api::GetParametersByPath,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Api::GetSecretValue => "GetSecretValue",
            Api::BatchGetSecretValue => "BatchGetSecretValue",
            Api::GetParameter => "GetParameter",
            Api::GetParameters => "GetParameters",
            Api::GetParametersByPath => "GetParametersByPath",
        }
    }
}

/// Which route a request took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SecretsManager,
    Ssm,
    Ping,
    Metrics,
    Other,
}

impl Route {
    pub const ALL: [Route; 5] = [
        Route::SecretsManager,
        Route::Ssm,
        Route::Ping,
        Route::Metrics,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::SecretsManager => "secretsmanager",
            Route::Ssm => "ssm",
            Route::Ping => "ping",
            Route::Metrics => "metrics",
            Route::Other => "other",
        }
    }
}

/// How a value request was answered from the cache's point of view.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Fresh value from memory.
    Hit,
    /// Fetched upstream for this request (or joined a fetch in flight).
    Miss,
    /// Cached value served past its TTL because upstream is failing.
    Stale,
    /// Caching off for this source: fetched upstream every time.
    Bypass,
}

impl Outcome {
    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Bypass => "bypass",
        }
    }
}

#[derive(Default)]
pub struct Metrics {
    requests: [Counter; 5],
    /// Indexed by status class: 2xx, 3xx, 4xx, 5xx.
    responses: [Counter; 4],
    outcomes: [Counter; 4],
    upstream_calls: [AtomicU64; 5],
    upstream_errors: [AtomicU64; 7],
    refreshes_ok: AtomicU64,
    refreshes_failed: AtomicU64,
    evictions: AtomicU64,
    entries: AtomicU64,
    auth_failures: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
}

impl Metrics {
    pub fn request(&self, route: Route) {
        self.requests[route as usize].add(1);
    }

    pub fn response(&self, status: u16) {
        if let Some(slot) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.responses.get(i as usize))
        {
            slot.add(1);
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome as usize].add(1);
    }

    pub fn upstream_call(&self, api: Api) {
        self.upstream_calls[api as usize].fetch_add(1, Relaxed);
    }

    pub fn upstream_error(&self, kind: ErrorKind) {
        self.upstream_errors[kind.index()].fetch_add(1, Relaxed);
    }

    pub fn refreshed(&self, ok: bool) {
        if ok { &self.refreshes_ok } else { &self.refreshes_failed }.fetch_add(1, Relaxed);
    }

    pub fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Relaxed);
    }

    pub fn set_entries(&self, n: usize) {
        self.entries.store(n as u64, Relaxed);
    }

    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn upstream_calls(&self, api: Api) -> u64 {
        self.upstream_calls[api as usize].load(Relaxed)
    }

    pub fn total_upstream_calls(&self) -> u64 {
        self.upstream_calls.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome as usize].get()
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let mut out = String::with_capacity(2048);
        header(
            &mut out,
            "secrets_sidecar_requests_total",
            "counter",
            "HTTP requests by route.",
        );
        for route in Route::ALL {
            let _ = writeln!(
                out,
                "secrets_sidecar_requests_total{{route=\"{}\"}} {}",
                route.label(),
                self.requests[route as usize].get()
            );
        }
        header(
            &mut out,
            "secrets_sidecar_responses_total",
            "counter",
            "HTTP responses by status class.",
        );
        for (i, class) in ["2xx", "3xx", "4xx", "5xx"].iter().enumerate() {
            let _ = writeln!(
                out,
                "secrets_sidecar_responses_total{{class=\"{class}\"}} {}",
                self.responses[i].get()
            );
        }
        header(
            &mut out,
            "secrets_sidecar_cache_requests_total",
            "counter",
            "Value requests by cache outcome.",
        );
        for o in [Outcome::Hit, Outcome::Miss, Outcome::Stale, Outcome::Bypass] {
            let _ = writeln!(
                out,
                "secrets_sidecar_cache_requests_total{{outcome=\"{}\"}} {}",
                o.label(),
                self.outcomes(o)
            );
        }
        header(
            &mut out,
            "secrets_sidecar_upstream_calls_total",
            "counter",
            "Upstream API calls by operation.",
        );
        for api in Api::ALL {
            let _ = writeln!(
                out,
                "secrets_sidecar_upstream_calls_total{{api=\"{}\"}} {}",
                api.name(),
                self.upstream_calls(api)
            );
        }
        header(
            &mut out,
            "secrets_sidecar_upstream_errors_total",
            "counter",
            "Failed upstream calls by kind.",
        );
        for kind in ErrorKind::ALL {
            let _ = writeln!(
                out,
                "secrets_sidecar_upstream_errors_total{{kind=\"{}\"}} {}",
                kind.label(),
                self.upstream_errors[kind.index()].load(Relaxed)
            );
        }
        header(
            &mut out,
            "secrets_sidecar_refreshes_total",
            "counter",
            "Background refreshes by result.",
        );
        let _ = writeln!(
            out,
            "secrets_sidecar_refreshes_total{{result=\"ok\"}} {}\nsecrets_sidecar_refreshes_total{{result=\"error\"}} {}",
            self.refreshes_ok.load(Relaxed),
            self.refreshes_failed.load(Relaxed)
        );
        for (name, kind, help, value) in [
            (
                "secrets_sidecar_evictions_total",
                "counter",
                "Entries evicted to respect the cache size.",
                &self.evictions,
            ),
            (
                "secrets_sidecar_cache_entries",
                "gauge",
                "Entries in the cache.",
                &self.entries,
            ),
            (
                "secrets_sidecar_auth_failures_total",
                "counter",
                "Requests refused for a missing or wrong token.",
                &self.auth_failures,
            ),
            (
                "secrets_sidecar_connections_refused_total",
                "counter",
                "Connections refused over the connection cap.",
                &self.connections_refused,
            ),
            (
                "secrets_sidecar_connections_open",
                "gauge",
                "Client connections open now.",
                &self.connections_open,
            ),
        ] {
            header(&mut out, name, kind, help);
            let _ = writeln!(out, "{name} {}", value.load(Relaxed));
        }
        out
    }

    /// The one line logged at shutdown.
    pub fn summary(&self) -> String {
        let sum = |a: &[AtomicU64]| a.iter().map(|c| c.load(Relaxed)).sum::<u64>();
        let total = |a: &[Counter]| a.iter().map(Counter::get).sum::<u64>();
        format!(
            "requests={} hits={} misses={} stale={} bypass={} upstream_calls={} upstream_errors={} refreshes_ok={} refreshes_failed={} evictions={} entries={} auth_failures={} connections_refused={}",
            total(&self.requests),
            self.outcomes(Outcome::Hit),
            self.outcomes(Outcome::Miss),
            self.outcomes(Outcome::Stale),
            self.outcomes(Outcome::Bypass),
            self.total_upstream_calls(),
            sum(&self.upstream_errors),
            self.refreshes_ok.load(Relaxed),
            self.refreshes_failed.load(Relaxed),
            self.evictions.load(Relaxed),
            self.entries.load(Relaxed),
            self.auth_failures.load(Relaxed),
            self.connections_refused.load(Relaxed),
        )
    }
}

fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_counts_in_prometheus_text() {
        let m = Metrics::default();
        m.request(Route::SecretsManager);
        m.request(Route::SecretsManager);
        m.response(200);
        m.response(404);
        m.response(503);
        m.outcome(Outcome::Hit);
        m.upstream_call(Api::BatchGetSecretValue);
        m.upstream_error(ErrorKind::Throttled);
        m.set_entries(7);
        let text = m.render();
        for line in [
            "secrets_sidecar_requests_total{route=\"secretsmanager\"} 2",
            "secrets_sidecar_responses_total{class=\"2xx\"} 1",
            "secrets_sidecar_responses_total{class=\"4xx\"} 1",
            "secrets_sidecar_responses_total{class=\"5xx\"} 1",
            "secrets_sidecar_cache_requests_total{outcome=\"hit\"} 1",
            "secrets_sidecar_upstream_calls_total{api=\"BatchGetSecretValue\"} 1",
            "secrets_sidecar_upstream_errors_total{kind=\"throttled\"} 1",
            "secrets_sidecar_cache_entries 7",
            "# TYPE secrets_sidecar_cache_entries gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        assert!(m.summary().contains("requests=2 hits=1"));
    }

    #[test]
    fn sharded_counters_sum_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(1)))
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.get(), 16_000);
    }

    #[test]
    fn odd_statuses_do_not_panic() {
        let m = Metrics::default();
        m.response(101);
        m.response(999);
        assert!(m.render().contains("class=\"2xx\"} 0"));
    }
}
