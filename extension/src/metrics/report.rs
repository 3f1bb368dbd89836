//! The counts as they are reported: `/metrics` in Prometheus text, the shutdown
//! summary line, and the totals EMF reports. A [`Snapshot`] joins the request
//! counters ([`Metrics`]) with what the cache and the backend count about themselves.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use super::{Counter, Metrics, Route};
use crate::backend::{Api, CallStats, ErrorKind};
use crate::cache::{Cache, Outcome};

/// Everything `/metrics` and the summary report: the server's counters and what
/// the cache and the backend count about themselves.
pub struct Snapshot<'a> {
    pub server: &'a Metrics,
    pub cache: &'a Cache,
    pub calls: &'a CallStats,
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
    /// Gauges, not counters: the cache's heap bytes now, and its budget.
    pub cache_bytes: u64,
    pub cache_budget: u64,
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
            cache_bytes: self.cache.bytes() as u64,
            cache_budget: self.cache.settings().budget as u64,
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
        let refusals = super::Refused::ALL.map(|r| (r.label(), server.refusals(r)));
        family(
            &mut out,
            "refusals_total",
            "counter",
            "Value requests the sidecar refused itself, by reason.",
            "reason",
            &refusals,
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
                "Entries evicted to respect the entry bound or the byte budget.",
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
                "cache_bytes",
                "gauge",
                "Heap bytes the cache's entries hold (values, identities, bookkeeping).",
                self.cache.bytes() as u64,
            ),
            (
                "cache_budget_bytes",
                "gauge",
                "The cache's byte budget.",
                self.cache.settings().budget as u64,
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
            "requests={requests} hits={} misses={} stale={} bypass={} upstream_calls={} upstream_errors={} refreshes_ok={} refreshes_failed={} evictions={} entries={} cache_bytes={} live_value_bytes={} auth_failures={} connections_refused={}",
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
            self.cache.bytes(),
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
        let held = cache.bytes();
        assert!(held > 0);
        for line in [
            format!("secrets_sidecar_cache_bytes {held}"),
            format!("secrets_sidecar_cache_budget_bytes {}", cache.settings().budget),
        ] {
            assert!(text.lines().any(|l| l == line), "missing {line}\n{text}");
        }
        let summary = snapshot.summary();
        assert!(summary.contains(&format!(" cache_bytes={held} ")), "{summary}");
        assert!(summary.contains("requests=2 hits=1"), "{summary}");
        assert!(summary.contains(" entries=2 "), "{summary}");
        assert!(
            !summary.contains(" live_value_bytes=0 "),
            "two values are alive: {summary}"
        );
        cache.wipe();
        let summary = snapshot.summary();
        assert!(
            summary.contains(" entries=0 cache_bytes=0 live_value_bytes=0 "),
            "{summary}"
        );
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
