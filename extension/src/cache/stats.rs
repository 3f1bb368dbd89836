//! What the cache counts about itself: how answers were obtained ([`Outcome`], counted
//! by the front doors per request), failed fetches by kind, refreshes, evictions.
//!
//! These are rare events (never per hit), so plain relaxed atomics do.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::backend::ErrorKind;

/// How a value was obtained from the cache's point of view.
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
    pub const ALL: [Outcome; 4] = [Outcome::Hit, Outcome::Miss, Outcome::Stale, Outcome::Bypass];

    pub fn label(self) -> &'static str {
        match self {
            Outcome::Hit => "hit",
            Outcome::Miss => "miss",
            Outcome::Stale => "stale",
            Outcome::Bypass => "bypass",
        }
    }

    pub fn index(self) -> usize {
        self as usize
    }
}

#[derive(Debug, Default)]
pub struct CacheStats {
    upstream_errors: [AtomicU64; ErrorKind::ALL.len()],
    refreshes_ok: AtomicU64,
    refreshes_failed: AtomicU64,
    evictions: AtomicU64,
    negative_hits: AtomicU64,
}

impl CacheStats {
    pub(super) fn upstream_error(&self, kind: ErrorKind) {
        self.upstream_errors[kind.index()].fetch_add(1, Relaxed);
    }

    pub(super) fn refreshed(&self, ok: u64, failed: u64) {
        self.refreshes_ok.fetch_add(ok, Relaxed);
        self.refreshes_failed.fetch_add(failed, Relaxed);
    }

    pub(super) fn negative_hit(&self) {
        self.negative_hits.fetch_add(1, Relaxed);
    }

    pub(super) fn evicted(&self, n: u64) {
        self.evictions.fetch_add(n, Relaxed);
    }

    /// Failed fetches of one kind (one per key, however many requests waited on it).
    pub fn upstream_errors(&self, kind: ErrorKind) -> u64 {
        self.upstream_errors[kind.index()].load(Relaxed)
    }

    pub fn total_upstream_errors(&self) -> u64 {
        self.upstream_errors.iter().map(|c| c.load(Relaxed)).sum()
    }

    pub fn refreshes_ok(&self) -> u64 {
        self.refreshes_ok.load(Relaxed)
    }

    pub fn refreshes_failed(&self) -> u64 {
        self.refreshes_failed.load(Relaxed)
    }

    /// Requests answered from a remembered definitive failure, with no upstream call.
    pub fn negative_hits(&self) -> u64 {
        self.negative_hits.load(Relaxed)
    }

    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }
}
