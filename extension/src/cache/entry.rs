//! One cache entry: a value, when it stops being fresh, when to refresh it ahead of
//! that, and the failure state that drives stale-if-error with backoff.
//!
//! Entries are immutable snapshots replaced as a whole on refresh or failure, so a
//! reader never sees half an update and no lock is held while serving. Only the
//! last-access time (for eviction) is updated in place, with a relaxed store.

use std::mem::size_of;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use super::jitter;
use super::key::Key;
use crate::backend::{UpstreamError, Value};

/// First retry after a failed refresh; doubles per consecutive failure.
pub(super) const BACKOFF_BASE: Duration = Duration::from_secs(1);
/// Longest wait between retries while upstream keeps failing.
pub(super) const BACKOFF_MAX: Duration = Duration::from_secs(60);
/// The refresh-ahead point lies in [`refresh_ahead`, `refresh_ahead` + this] of the
/// TTL (never past it), at this process's offset (`jitter`), so environments
/// restored from one snapshot, or started together, do not all refresh at the same
/// moment, while one environment's keys still refresh together. 15% of a 60 s TTL
/// is 9 s: a fleet of 200 started at once then offers ~22 calls/s, under the 40/s
/// SSM and 50/s Secrets Manager quotas (5% kept it at 71/s: `make bench` section 8).
pub(super) const REFRESH_JITTER: f64 = 0.15;

pub(super) struct Entry {
    pub(super) value: Arc<Value>,
    /// The id refreshes are fetched with: the one the first request used.
    pub(super) fetch_id: Arc<str>,
    pub(super) fetched_at: Instant,
    pub(super) fresh_until: Instant,
    pub(super) refresh_at: Instant,
    /// Kept warm by refresh-ahead even when unused (prefetched at start-up).
    pub(super) pinned: bool,
    pub(super) failures: u32,
    pub(super) retry_at: Option<Instant>,
    pub(super) last_error: Option<UpstreamError>,
    /// When a `refreshNow` request last went upstream, for its rate limit.
    pub(super) forced_at: Option<Instant>,
    /// Heap bytes this entry holds, counted against the byte budget (`store`).
    pub(super) cost: usize,
    /// Milliseconds since the cache's epoch.
    last_access: AtomicU64,
    /// Served at least once since this value was fetched.
    used: AtomicBool,
}

impl Entry {
    pub(super) fn fresh(
        value: Arc<Value>,
        fetch_id: Arc<str>,
        now: Instant,
        ttl: Duration,
        refresh_ahead: f64,
        now_ms: u64,
    ) -> Entry {
        Entry {
            value,
            fetch_id,
            fetched_at: now,
            fresh_until: now + ttl,
            refresh_at: now + ttl.mul_f64((refresh_ahead + REFRESH_JITTER * jitter::refresh_offset()).min(1.0)),
            pinned: false,
            failures: 0,
            retry_at: None,
            last_error: None,
            forced_at: None,
            cost: 0,
            last_access: AtomicU64::new(now_ms),
            used: AtomicBool::new(false),
        }
    }

    /// The same value after one more failed refresh: retry later, with jitter.
    pub(super) fn failed(&self, now: Instant, error: UpstreamError) -> Entry {
        let failures = self.failures.saturating_add(1);
        Entry {
            value: self.value.clone(),
            fetch_id: self.fetch_id.clone(),
            fetched_at: self.fetched_at,
            fresh_until: self.fresh_until,
            refresh_at: self.refresh_at,
            pinned: self.pinned,
            failures,
            retry_at: Some(now + backoff(failures)),
            last_error: Some(error),
            forced_at: self.forced_at,
            cost: self.cost,
            last_access: AtomicU64::new(self.last_access.load(Relaxed)),
            used: AtomicBool::new(self.used.load(Relaxed)),
        }
    }

    /// Records a use. Stores are skipped when nothing changes, which keeps the
    /// cache line shared between cores on hot keys.
    pub(super) fn touch(&self, now_ms: u64) {
        if self.last_access.load(Relaxed) != now_ms {
            self.last_access.store(now_ms, Relaxed);
        }
        if !self.used.load(Relaxed) {
            self.used.store(true, Relaxed);
        }
    }

    /// Keeps the eviction age of the value this entry replaces, without counting a use.
    pub(super) fn inherit_access(&self, last_access_ms: u64) {
        self.last_access.store(last_access_ms, Relaxed);
    }

    pub(super) fn used(&self) -> bool {
        self.used.load(Relaxed)
    }

    pub(super) fn last_access(&self) -> u64 {
        self.last_access.load(Relaxed)
    }

    /// Whether the value may still be served, stale, while upstream fails.
    pub(super) fn within_stale_limit(&self, now: Instant, max_stale: Duration) -> bool {
        now < self.fresh_until + max_stale
    }

    pub(super) fn backing_off(&self, now: Instant) -> bool {
        self.retry_at.is_some_and(|t| now < t)
    }
}

/// Exponential backoff with "equal jitter": half the step is fixed, half drawn, so
/// retries spread out but never collapse to zero. The draw is this environment's
/// for that failure count (`jitter::retry_offset`): keys that failed in one batch
/// come due again together and retry as one batch, while environments differ.
pub(super) fn backoff(failures: u32) -> Duration {
    backoff_with(failures, jitter::spreading())
}

/// [`backoff`], or without spreading a fixed [`BACKOFF_BASE`] (the naive baseline).
fn backoff_with(failures: u32, spread: bool) -> Duration {
    if !spread {
        return BACKOFF_BASE;
    }
    let exp = failures.saturating_sub(1).min(16);
    let step = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
    let half = step / 2;
    half + half.mul_f64(jitter::retry_offset(failures))
}

/// What keeping `value`, fetched as `fetch_id`, costs against the byte budget: the
/// value's own footprint (its stored id is its ARN or name, shared, not copied),
/// the entry in its map slot, the fetch id, and up to three aliases leading to it.
pub(super) fn cost(fetch_id: &str, value: &Value) -> usize {
    const ALLOCATION: usize = 16;
    let slot = size_of::<Key>() + size_of::<Arc<Entry>>() + 8 + size_of::<Entry>() + 16 + ALLOCATION;
    let shared_str = |s: &str| 16 + s.len() + ALLOCATION;
    let alias = |s: &str| size_of::<Box<str>>() + size_of::<Arc<str>>() + 8 + s.len() + ALLOCATION;
    value.footprint() + slot + shared_str(fetch_id) + alias(fetch_id) + alias(&value.name) + alias(&value.arn)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_refresh_point_follows_the_offset_after_the_configured_fraction_and_before_expiry() {
        let now = Instant::now();
        let ttl = Duration::from_secs(100);
        let value = Arc::new(crate::backend::fake::FakeUpstream::value_for_tests());
        let point = |ra| Entry::fresh(value.clone(), "id".into(), now, ttl, ra, 0).refresh_at - now;
        let p = point(0.75);
        assert!(
            p >= ttl.mul_f64(0.75) && p <= ttl.mul_f64(0.75 + REFRESH_JITTER),
            "{p:?}"
        );
        let expected = ttl.mul_f64(0.75 + REFRESH_JITTER * jitter::refresh_offset());
        // Equal up to the nanosecond rounding of `mul_f64`.
        assert!(p.abs_diff(expected) < Duration::from_micros(1), "{p:?} vs {expected:?}");
        assert_eq!(point(0.75), p, "one environment's keys stay due together");
        let at_expiry = Entry::fresh(value, "id".into(), now, ttl, 1.0, 0);
        assert_eq!(at_expiry.refresh_at, now + ttl, "never past expiry");
    }

    #[test]
    fn backoff_grows_and_is_capped_with_jitter() {
        for failures in 1..40u32 {
            let exp = failures.saturating_sub(1).min(16);
            let step = BACKOFF_BASE.saturating_mul(1u32 << exp).min(BACKOFF_MAX);
            for _ in 0..50 {
                let d = backoff(failures);
                assert!(d >= step / 2 && d <= step, "failures={failures} d={d:?}");
            }
        }
        assert!(backoff(1) <= Duration::from_secs(1));
        assert!(backoff(100) >= BACKOFF_MAX / 2);
    }

    #[test]
    fn without_spreading_the_backoff_is_fixed() {
        for failures in [1, 2, 10, 100] {
            assert_eq!(backoff_with(failures, false), BACKOFF_BASE);
        }
        assert!(backoff_with(10, true) > BACKOFF_BASE);
    }
}
