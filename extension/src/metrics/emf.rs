//! Metrics Lambda can see without a scraper: CloudWatch Embedded Metric Format
//! (EMF) lines on stdout, which CloudWatch Logs turns into metrics.
//!
//! On with `SECRETS_SIDECAR_EMF=true` only: custom metrics cost money, and a drop-in
//! replacement must not add charges unasked. Each line carries the counters as
//! deltas since the previous line (namespace `SecretsSidecar`, dimension
//! `FunctionName`), so CloudWatch's Sum over any period is the count in it; the
//! cache's bytes and budget are gauges, reported as they are (unit Bytes). Lines
//! come at most once a minute (the lifecycle asks on each INVOKE, or on its timer
//! under Managed Instances and standalone) and once more at SHUTDOWN. Counts only:
//! no value, no id, nothing a caller typed.
//!
//! In Lambda's JSON log format the line also carries the fields every other line of
//! ours has (`timestamp`, `level`, `target`, `message`), so it reads as one more log
//! event; EMF allows members besides its own at the root.

use std::io::Write;
use std::sync::Mutex;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Map, Value};
use tokio::time::Instant;

use super::Totals;
use crate::config::LogFormat;

pub const NAMESPACE: &str = "SecretsSidecar";
pub const DIMENSION: &str = "FunctionName";
/// At most one line per this interval (but always one at SHUTDOWN).
pub const INTERVAL: Duration = Duration::from_secs(60);

/// Metric names, each with its value and unit.
fn metrics(t: &Totals) -> [(&'static str, u64, &'static str); 14] {
    [
        ("Requests", t.requests, "Count"),
        ("CacheHits", t.hits, "Count"),
        ("CacheMisses", t.misses, "Count"),
        ("StaleAnswers", t.stale, "Count"),
        ("CacheBypasses", t.bypass, "Count"),
        ("UpstreamCalls", t.upstream_calls, "Count"),
        ("UpstreamErrors", t.upstream_errors, "Count"),
        ("Refreshes", t.refreshes_ok, "Count"),
        ("RefreshFailures", t.refreshes_failed, "Count"),
        ("Evictions", t.evictions, "Count"),
        ("AuthFailures", t.auth_failures, "Count"),
        ("ConnectionsRefused", t.connections_refused, "Count"),
        ("CacheBytes", t.cache_bytes, "Bytes"),
        ("CacheBudget", t.cache_budget, "Bytes"),
    ]
}

fn delta(now: &Totals, before: &Totals) -> Totals {
    let d = |a: u64, b: u64| a.saturating_sub(b);
    Totals {
        requests: d(now.requests, before.requests),
        hits: d(now.hits, before.hits),
        misses: d(now.misses, before.misses),
        stale: d(now.stale, before.stale),
        bypass: d(now.bypass, before.bypass),
        upstream_calls: d(now.upstream_calls, before.upstream_calls),
        upstream_errors: d(now.upstream_errors, before.upstream_errors),
        refreshes_ok: d(now.refreshes_ok, before.refreshes_ok),
        refreshes_failed: d(now.refreshes_failed, before.refreshes_failed),
        evictions: d(now.evictions, before.evictions),
        auth_failures: d(now.auth_failures, before.auth_failures),
        connections_refused: d(now.connections_refused, before.connections_refused),
        // Gauges: what they are now.
        cache_bytes: now.cache_bytes,
        cache_budget: now.cache_budget,
    }
}

/// What was reported last, and when.
struct State {
    at: Instant,
    reported: Totals,
}

pub struct Emf {
    function: String,
    format: LogFormat,
    state: Mutex<State>,
}

impl Emf {
    /// `function`: the dimension's value. The first line is due a minute after `now`.
    pub fn new(function: String, format: LogFormat, now: Instant) -> Emf {
        Emf {
            function,
            format,
            state: Mutex::new(State {
                at: now,
                reported: Totals::default(),
            }),
        }
    }

    fn state(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// The line due at `now`, if a minute has passed since the last one.
    pub fn tick(&self, totals: Totals, now: Instant) -> Option<String> {
        let mut state = self.state();
        if now.duration_since(state.at) < INTERVAL {
            return None;
        }
        Some(self.advance(&mut state, totals, now))
    }

    /// The last line (SHUTDOWN): whatever was counted since the previous one.
    pub fn flush(&self, totals: Totals, now: Instant) -> String {
        let mut state = self.state();
        self.advance(&mut state, totals, now)
    }

    fn advance(&self, state: &mut State, totals: Totals, now: Instant) -> String {
        let deltas = delta(&totals, &state.reported);
        state.at = now;
        state.reported = totals;
        self.render(&deltas, SystemTime::now())
    }

    /// One EMF document on one line.
    pub fn render(&self, deltas: &Totals, at: SystemTime) -> String {
        let epoch = at.duration_since(UNIX_EPOCH).unwrap_or_default();
        let pairs = metrics(deltas);
        let definitions: Vec<Value> = pairs
            .iter()
            .map(|(name, _, unit)| json!({"Name": name, "Unit": unit}))
            .collect();
        let mut root = Map::new();
        if self.format == LogFormat::Json {
            root.insert("timestamp".into(), rfc3339(epoch).into());
            root.insert("level".into(), "INFO".into());
            root.insert("target".into(), module_path!().into());
            root.insert("message".into(), "metrics".into());
        }
        root.insert(
            "_aws".into(),
            json!({
                "Timestamp": epoch.as_millis() as u64,
                "CloudWatchMetrics": [{
                    "Namespace": NAMESPACE,
                    "Dimensions": [[DIMENSION]],
                    "Metrics": definitions,
                }],
            }),
        );
        root.insert(DIMENSION.into(), self.function.clone().into());
        for (name, n, _) in pairs {
            root.insert(name.into(), n.into());
        }
        Value::Object(root).to_string()
    }
}

/// Writes one line to stdout in a single write, so it never interleaves with another.
pub fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = out.write_all(format!("{line}\n").as_bytes());
    let _ = out.flush();
}

/// `YYYY-MM-DDTHH:MM:SS.ffffffZ`, as our JSON log lines write their timestamps.
fn rfc3339(epoch: Duration) -> String {
    let secs = epoch.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (H. Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:06}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        epoch.subsec_micros()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn totals(requests: u64, hits: u64) -> Totals {
        Totals {
            requests,
            hits,
            ..Totals::default()
        }
    }

    #[test]
    fn deltas_at_most_once_a_minute_and_always_at_the_end() {
        let start = Instant::now();
        let emf = Emf::new("weather".into(), LogFormat::Text, start);
        assert!(emf.tick(totals(5, 4), start + Duration::from_secs(59)).is_none());
        let line = emf.tick(totals(5, 4), start + INTERVAL).expect("due");
        let v: Value = serde_json::from_str(&line).expect("json");
        assert_eq!((v["Requests"].as_u64(), v["CacheHits"].as_u64()), (Some(5), Some(4)));
        assert!(emf
            .tick(totals(9, 7), start + INTERVAL + Duration::from_secs(30))
            .is_none());
        let last = emf.flush(totals(9, 7), start + INTERVAL + Duration::from_secs(31));
        let v: Value = serde_json::from_str(&last).expect("json");
        assert_eq!(
            (v["Requests"].as_u64(), v["CacheHits"].as_u64()),
            (Some(4), Some(3)),
            "deltas"
        );
        assert_eq!(v["FunctionName"], "weather");
        assert!(v.get("timestamp").is_none(), "text format: the bare EMF document");
    }

    #[test]
    fn the_cache_gauges_are_reported_as_they_stand_in_bytes() {
        let start = Instant::now();
        let emf = Emf::new("f".into(), LogFormat::Text, start);
        let at = |bytes| Totals {
            cache_bytes: bytes,
            cache_budget: 8 << 20,
            ..Totals::default()
        };
        let _ = emf.tick(at(5000), start + INTERVAL).expect("due");
        let v: Value = serde_json::from_str(&emf.flush(at(3000), start + INTERVAL * 2)).expect("json");
        assert_eq!(v["CacheBytes"].as_u64(), Some(3000), "not a delta");
        assert_eq!(v["CacheBudget"].as_u64(), Some(8 << 20));
        let units: Vec<(String, String)> = v["_aws"]["CloudWatchMetrics"][0]["Metrics"]
            .as_array()
            .expect("definitions")
            .iter()
            .map(|d| {
                (
                    d["Name"].as_str().unwrap_or("").to_owned(),
                    d["Unit"].as_str().unwrap_or("").to_owned(),
                )
            })
            .collect();
        assert!(units.contains(&("CacheBytes".into(), "Bytes".into())), "{units:?}");
        assert!(units.contains(&("Requests".into(), "Count".into())), "{units:?}");
    }

    #[test]
    fn json_log_format_adds_our_log_fields() {
        let emf = Emf::new("f".into(), LogFormat::Json, Instant::now());
        let at = UNIX_EPOCH + Duration::from_micros(1_700_000_000_123_456);
        let v: Value = serde_json::from_str(&emf.render(&Totals::default(), at)).expect("json");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123456Z");
        assert_eq!(v["level"], "INFO");
        assert_eq!(v["_aws"]["Timestamp"], 1_700_000_000_123u64);
        assert_eq!(v["_aws"]["CloudWatchMetrics"][0]["Namespace"], NAMESPACE);
    }

    #[test]
    fn civil_dates() {
        assert_eq!(rfc3339(Duration::ZERO), "1970-01-01T00:00:00.000000Z");
        assert_eq!(rfc3339(Duration::from_secs(951_782_400)), "2000-02-29T00:00:00.000000Z");
        assert_eq!(
            rfc3339(Duration::from_secs(4_107_542_399)),
            "2100-02-28T23:59:59.000000Z"
        );
    }
}
