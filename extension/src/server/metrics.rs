//! What the server counts (requests by route, responses by status class, answers by
//! cache outcome, auth failures, connections), and `/metrics` (Prometheus text) and
//! the shutdown summary line, which add what the cache ([`CacheStats`](crate::cache::CacheStats)) and the
//! backend ([`CallStats`]) count about themselves.
//!
//! Relaxed atomics and no locks. The counters every request bumps are split into
//! per-thread shards on separate cache lines ([`Counter`]), so worker threads do not
//! bounce one line between cores; reading sums the shards. Counts are exact; only
//! their ordering relative to each other is not.

use std::cell::Cell;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::backend::{Api, CallStats, ErrorKind};
use crate::cache::{Cache, Outcome};

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

/// Which route a request took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SecretsManager,
    Ssm,
    Ping,
    Metrics,
    /// `POST /`: the AWS SDKs' own protocol.
    Sdk,
    Other,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::SecretsManager,
        Route::Ssm,
        Route::Ping,
        Route::Metrics,
        Route::Sdk,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::SecretsManager => "secretsmanager",
            Route::Ssm => "ssm",
            Route::Ping => "ping",
            Route::Metrics => "metrics",
            Route::Sdk => "sdk",
            Route::Other => "other",
        }
    }
}

/// The server's own counters.
#[derive(Default)]
pub struct Metrics {
    requests: [Counter; Route::ALL.len()],
    /// Indexed by status class: 2xx, 3xx, 4xx, 5xx.
    responses: [Counter; 4],
    outcomes: [Counter; Outcome::ALL.len()],
    auth_failures: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    /// SDK-route requests by operation and how they were handled (`sdk::route`):
    /// a short list, bounded, since operation names come from callers.
    sdk: std::sync::Mutex<Vec<(Box<str>, &'static str, u64)>>,
}

/// Distinct (operation, handling) pairs counted; more are counted as `other`.
const MAX_SDK_SERIES: usize = 64;

/// Everything `/metrics` and the summary report: the server's counters and what
/// the cache and the backend count about themselves.
pub struct Snapshot<'a> {
    pub server: &'a Metrics,
    pub cache: &'a Cache,
    pub calls: &'a CallStats,
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

    /// Counts one SDK-route request (`handled`: cache, forward, refused or error).
    pub fn sdk(&self, operation: &str, handled: crate::server::sdk::route::Handled) {
        let handled = handled.label();
        let mut series = self.sdk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let operation =
            if series.len() >= MAX_SDK_SERIES && !series.iter().any(|(o, h, _)| &**o == operation && *h == handled) {
                "other"
            } else {
                operation
            };
        match series.iter_mut().find(|(o, h, _)| &**o == operation && *h == handled) {
            Some(entry) => entry.2 += 1,
            None => series.push((operation.into(), handled, 1)),
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome.index()].add(1);
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

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].get()
    }
}

/// The counters reported as metrics outside `/metrics` (EMF), totals since start.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    pub requests: u64,
    pub hits: u64,
    pub misses: u64,
    pub stale: u64,
    pub bypass: u64,
    pub upstream_calls: u64,
    pub upstream_errors: u64,
    pub refreshes_ok: u64,
    pub refreshes_failed: u64,
    pub evictions: u64,
    pub auth_failures: u64,
    pub connections_refused: u64,
}

impl Snapshot<'_> {
    /// Every counter's total now.
    pub fn totals(&self) -> Totals {
        let (server, stats) = (self.server, self.cache.stats());
        Totals {
            requests: server.requests.iter().map(Counter::get).sum(),
            hits: server.outcomes(Outcome::Hit),
            misses: server.outcomes(Outcome::Miss),
            stale: server.outcomes(Outcome::Stale),
            bypass: server.outcomes(Outcome::Bypass),
            upstream_calls: self.calls.total(),
            upstream_errors: stats.total_upstream_errors(),
            refreshes_ok: stats.refreshes_ok(),
            refreshes_failed: stats.refreshes_failed(),
            evictions: stats.evictions(),
            auth_failures: server.auth_failures.load(Relaxed),
            connections_refused: server.connections_refused.load(Relaxed),
        }
    }

    /// Prometheus text exposition format, version 0.0.4.
    pub fn render(&self) -> String {
        let (server, stats, calls) = (self.server, self.cache.stats(), self.calls);
        let mut out = String::with_capacity(2048);
        let routes = Route::ALL.map(|r| (r.label(), server.requests[r as usize].get()));
        family(
            &mut out,
            "requests_total",
            "counter",
            "HTTP requests by route.",
            "route",
            &routes,
        );
        let classes = ["2xx", "3xx", "4xx", "5xx"];
        let responses: Vec<_> = classes
            .iter()
            .zip(&server.responses)
            .map(|(c, n)| (*c, n.get()))
            .collect();
        family(
            &mut out,
            "responses_total",
            "counter",
            "HTTP responses by status class.",
            "class",
            &responses,
        );
        let outcomes = Outcome::ALL.map(|o| (o.label(), server.outcomes(o)));
        family(
            &mut out,
            "cache_requests_total",
            "counter",
            "Value requests by cache outcome.",
            "outcome",
            &outcomes,
        );
        let apis = Api::ALL.map(|a| (a.name(), calls.get(a)));
        family(
            &mut out,
            "upstream_calls_total",
            "counter",
            "Upstream API calls by operation.",
            "api",
            &apis,
        );
        let errors = ErrorKind::ALL.map(|k| (k.label(), stats.upstream_errors(k)));
        family(
            &mut out,
            "upstream_errors_total",
            "counter",
            "Failed upstream calls by kind.",
            "kind",
            &errors,
        );
        let refreshes = [("ok", stats.refreshes_ok()), ("error", stats.refreshes_failed())];
        family(
            &mut out,
            "refreshes_total",
            "counter",
            "Background refreshes by result.",
            "result",
            &refreshes,
        );
        for (name, kind, help, value) in [
            (
                "evictions_total",
                "counter",
                "Entries evicted to respect the cache size.",
                stats.evictions(),
            ),
            (
                "negative_hits_total",
                "counter",
                "Requests answered from a remembered not-found, access-denied or not-allowed answer.",
                stats.negative_hits(),
            ),
            (
                "cache_entries",
                "gauge",
                "Entries in the cache.",
                self.cache.len() as u64,
            ),
            (
                "auth_failures_total",
                "counter",
                "Requests refused for a missing or wrong token.",
                server.auth_failures.load(Relaxed),
            ),
            (
                "connections_refused_total",
                "counter",
                "Connections refused over the connection cap.",
                server.connections_refused.load(Relaxed),
            ),
            (
                "connections_open",
                "gauge",
                "Client connections open now.",
                server.connections_open.load(Relaxed),
            ),
        ] {
            family(&mut out, name, kind, help, "", &[("", value)]);
        }
        let _ = writeln!(
            out,
            "# HELP secrets_sidecar_sdk_requests_total SDK-protocol requests by operation and handling (cache, forward, refused, error).\n# TYPE secrets_sidecar_sdk_requests_total counter"
        );
        let series = server
            .sdk
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone();
        for (operation, handled, n) in series {
            let _ = writeln!(
                out,
                "secrets_sidecar_sdk_requests_total{{operation=\"{operation}\",handled=\"{handled}\"}} {n}"
            );
        }
        out
    }

    /// The one line logged at shutdown. `entries` and `live_value_bytes` say whether
    /// the wipe left anything behind.
    pub fn summary(&self) -> String {
        let (server, stats) = (self.server, self.cache.stats());
        let requests: u64 = server.requests.iter().map(Counter::get).sum();
        format!(
            "requests={requests} hits={} misses={} stale={} bypass={} upstream_calls={} upstream_errors={} refreshes_ok={} refreshes_failed={} evictions={} entries={} live_value_bytes={} auth_failures={} connections_refused={}",
            server.outcomes(Outcome::Hit),
            server.outcomes(Outcome::Miss),
            server.outcomes(Outcome::Stale),
            server.outcomes(Outcome::Bypass),
            self.calls.total(),
            stats.total_upstream_errors(),
            stats.refreshes_ok(),
            stats.refreshes_failed(),
            stats.evictions(),
            self.cache.len(),
            self.cache.live_value_bytes(),
            server.auth_failures.load(Relaxed),
            server.connections_refused.load(Relaxed),
        )
    }
}

/// One metric family: its `# HELP` and `# TYPE` lines, then one sample per
/// `(label value, count)`; with an empty `label`, a single unlabelled sample.
fn family(out: &mut String, name: &str, kind: &str, help: &str, label: &str, samples: &[(&str, u64)]) {
    let _ = writeln!(
        out,
        "# HELP secrets_sidecar_{name} {help}\n# TYPE secrets_sidecar_{name} {kind}"
    );
    for (value, n) in samples {
        if label.is_empty() {
            let _ = writeln!(out, "secrets_sidecar_{name} {n}");
        } else {
            let _ = writeln!(out, "secrets_sidecar_{name}{{{label}=\"{value}\"}} {n}");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::cache::{CacheSettings, Freshness, Key};
    use crate::model::{Selector, Source};
    use std::sync::Arc;
    use std::time::Duration;

    fn cache() -> (Cache, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        let settings = CacheSettings::for_tests(10, Duration::from_secs(60));
        (Cache::new(settings, fake.clone()), fake)
    }

    #[tokio::test]
    async fn renders_every_layers_counts_in_prometheus_text() {
        let (cache, fake) = cache();
        fake.put_secret("a", "v");
        fake.put_secret("b", "v");
        for id in ["a", "b", "gone"] {
            let key = Key::new(Source::SecretsManager, id.into(), Selector::Current, false);
            let _ = cache.get(&key, Freshness::Cached).await;
        }
        let m = Metrics::default();
        m.request(Route::SecretsManager);
        m.request(Route::SecretsManager);
        m.response(200);
        m.response(404);
        m.response(503);
        m.outcome(Outcome::Hit);
        let calls = CallStats::default();
        calls.record(Api::BatchGetSecretValue);
        let snapshot = Snapshot {
            server: &m,
            cache: &cache,
            calls: &calls,
        };
        let text = snapshot.render();
        for line in [
            "secrets_sidecar_requests_total{route=\"secretsmanager\"} 2",
            "secrets_sidecar_responses_total{class=\"2xx\"} 1",
            "secrets_sidecar_responses_total{class=\"4xx\"} 1",
            "secrets_sidecar_responses_total{class=\"5xx\"} 1",
            "secrets_sidecar_cache_requests_total{outcome=\"hit\"} 1",
            "secrets_sidecar_upstream_calls_total{api=\"BatchGetSecretValue\"} 1",
            "secrets_sidecar_upstream_errors_total{kind=\"not_found\"} 1",
            "secrets_sidecar_cache_entries 2",
            "# TYPE secrets_sidecar_cache_entries gauge",
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let summary = snapshot.summary();
        assert!(summary.contains("requests=2 hits=1"), "{summary}");
        assert!(summary.contains(" entries=2 "), "{summary}");
        assert!(
            !summary.contains(" live_value_bytes=0 "),
            "two values are alive: {summary}"
        );
        cache.wipe();
        let summary = snapshot.summary();
        assert!(summary.contains(" entries=0 live_value_bytes=0 "), "{summary}");
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
        let (cache, _) = cache();
        let calls = CallStats::default();
        let text = Snapshot {
            server: &m,
            cache: &cache,
            calls: &calls,
        }
        .render();
        assert!(text.contains("class=\"2xx\"} 0"));
    }
}
