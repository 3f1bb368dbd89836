//! What a fetched value becomes before anyone else sees it: checked against the
//! allowlist on the identity AWS returned (`admit`), counted on the value meter,
//! and stored within the cache's two bounds, entries and bytes (`keep`). A value
//! larger than the whole byte budget is served to whoever waits but not cached.

use std::sync::atomic::Ordering::Relaxed;
use std::sync::Arc;

use tokio::time::Instant;
use tracing::warn;

use super::entry::{self, Entry};
use super::flight::FetchFor;
use super::key::Key;
use super::Cache;
use crate::backend::{ErrorKind, UpstreamError, Value};

impl Cache {
    /// Takes a fetched value into the cache's accounting and, when `how` says so,
    /// stores it under `key`'s canonical id. After shutdown began nothing is stored:
    /// the wipe must be the last word.
    pub(super) fn keep(&self, key: &Key, fetch_id: &Arc<str>, mut value: Value, how: FetchFor) -> Arc<Value> {
        let inner = &self.inner;
        value.meter(&inner.meter);
        let value = Arc::new(value);
        let settings = &inner.settings;
        if !how.store || !settings.caches(key.source) || self.closed() {
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
    pub(super) fn admit(&self, key: &Key, fetch_id: &str, value: Value) -> Result<Value, UpstreamError> {
        let Some(allow) = &self.inner.settings.allow else {
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
}
