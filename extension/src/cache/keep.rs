//! What a fetched value becomes before anyone else sees it: checked against the
//! allowlist on the identity AWS returned (`admit`), counted on the value meter,
//! and stored within the cache's two bounds, entries and bytes (`keep`). A value
//! larger than the whole byte budget is served to whoever waits but not cached.
//! [`FetchFor`] is why a fetch happens, which decides what keeping does.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::warn;

use super::entry::{self, Entry};
use super::key::Key;
use super::Cache;
use crate::backend::{ErrorKind, UpstreamError, Value};

/// Why a fetch happens, which decides what its result does to the entry.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct FetchFor {
    /// A `refreshNow` request: starts the rate-limit interval.
    pub(super) forced: bool,
    /// Keep the result (false when caching is off for the source).
    pub(super) store: bool,
    /// Prefetched: refresh-ahead keeps it warm even when unused.
    pub(super) pinned: bool,
    /// A request is waiting for it, so the new value counts as used.
    pub(super) served: bool,
    /// A value is in hand and served meanwhile (a refresh, or a revalidation that
    /// may serve stale): one attempt, no SDK retries.
    pub(super) held: bool,
}

impl FetchFor {
    /// A request's own fetch.
    pub(super) fn request(forced: bool, store: bool) -> FetchFor {
        FetchFor {
            forced,
            store,
            pinned: false,
            served: true,
            held: false,
        }
    }

    /// A request's fetch while `held` says whether a value can be served if it fails.
    pub(super) fn holding(self, held: bool) -> FetchFor {
        FetchFor { held, ..self }
    }

    /// Start-up prefetch.
    pub(super) const PREFETCH: FetchFor = FetchFor {
        forced: false,
        store: true,
        pinned: true,
        served: false,
        held: false,
    };
    /// Background refresh-ahead.
    pub(super) const REFRESH: FetchFor = FetchFor {
        forced: false,
        store: true,
        pinned: false,
        served: false,
        held: true,
    };
}

/// Takes a fetched value into the cache's accounting and, when `how` says so,
/// stores it under `key`'s canonical id. After shutdown began nothing is stored:
/// the wipe must be the last word.
pub(super) fn keep(cache: &Cache, key: &Key, fetch_id: &Arc<str>, mut value: Value, how: FetchFor) -> Arc<Value> {
    let inner = &cache.inner;
    value.meter(&inner.meter);
    let value = Arc::new(value);
    let settings = &inner.settings;
    if !how.store || !settings.caches(key.source) || cache.closed() {
        return value;
    }
    let cost = entry::cost(fetch_id, &value);
    if !inner.store.admits(cost) {
        // Served to whoever waits, never cached; what was cached for the key is
        // older than this and goes too.
        warn!(
            source = key.source.label(),
            id = %fetch_id,
            bytes = cost,
            budget = settings.budget,
            "value larger than the cache's byte budget: served, not cached"
        );
        inner.store.forget(key);
        if how.pinned {
            inner.unfit.fetch_add(cost, Relaxed);
        }
        return value;
    }
    let now = Instant::now();
    let now_ms = inner.store.now_ms(now);
    let evicted = inner.store.insert(key, fetch_id, &value, cost, |prev| {
        let ttl = settings.ttl(key.source);
        let mut entry = Entry::fresh(
            value.clone(),
            fetch_id.clone(),
            now,
            ttl,
            settings.refresh_ahead,
            now_ms,
        );
        entry.forced_at = if how.forced {
            Some(now)
        } else {
            prev.and_then(|p| p.forced_at)
        };
        entry.pinned = how.pinned || prev.is_some_and(|p| p.pinned);
        if how.served {
            entry.touch(now_ms);
        } else if let Some(p) = prev {
            entry.inherit_access(p.last_access());
        }
        entry
    });
    if evicted > 0 {
        inner.stats.evicted(evicted);
    }
    value
}

/// Lets a fetched value through when the allowlist permits the identity AWS
/// returned for it; otherwise drops it at once (its buffers are zeroized as it
/// goes) and answers `NotAllowed`, so nothing stores, aliases or serves it.
pub(super) fn admit(cache: &Cache, key: &Key, fetch_id: &str, value: Value) -> Result<Value, UpstreamError> {
    if let Some(tenancy) = &cache.inner.settings.tenancy {
        if !tenancy.permits_value(key.source, &value) {
            warn!(
                source = key.source.label(),
                id = %fetch_id,
                returned = %value.name,
                "refused: AWS answered with another tenant's secret"
            );
            drop(value);
            return Err(UpstreamError::new(
                ErrorKind::NotAllowed,
                format!("'{fetch_id}' names another tenant's secret"),
            ));
        }
    }
    let Some(allow) = &cache.inner.settings.allow else {
        return Ok(value);
    };
    if allow.permits_value(key.source, &value) {
        return Ok(value);
    }
    warn!(
        source = key.source.label(),
        id = %fetch_id,
        returned = %value.name,
        "refused: AWS answered with a secret outside the allowlist"
    );
    drop(value);
    Err(UpstreamError::new(
        ErrorKind::NotAllowed,
        format!("'{fetch_id}' names a secret outside SECRETS_SIDECAR_ALLOW"),
    ))
}
