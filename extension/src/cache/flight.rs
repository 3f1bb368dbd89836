//! Single-flight: at most one upstream fetch per key at a time, however many wait.
//!
//! A fetch is registered with [`Flights::begin`]: the first caller gets a
//! [`FlightHandle`] and must finish it; everyone else gets a receiver and waits. The
//! handle stores the result (or records the failure) before it unregisters, so a
//! newcomer finds either the flight or the entry, never neither. Dropping a handle
//! unfinished (shutdown, a spent budget, a panicked batch) wakes the waiters with a
//! transient `Aborted` error. SSM path prefetches are flights too, by prefix: a
//! request for a name under a path being fetched waits for that path.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::watch;
use tokio::time::Instant;
use tracing::{debug, warn};

use super::jitter;
use super::keep::{self, FetchFor};
use super::key::Key;
use super::Cache;
use crate::backend::{Attempts, Upstream, UpstreamError, Value, Via};
use crate::model::Source;

pub(super) type FlightResult = Result<Arc<Value>, UpstreamError>;
pub(super) type FlightRx = watch::Receiver<Option<FlightResult>>;

/// Locks a std mutex, surviving poisoning: the maps it guards stay consistent
/// because no code panics while holding them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

#[derive(Default)]
pub(super) struct Flights {
    by_key: Mutex<HashMap<Key, FlightRx>>,
    /// SSM path prefetches under way; a request for a name below one waits for it.
    paths: Mutex<Vec<(String, watch::Receiver<bool>)>>,
}

/// The outcome of [`Flights::begin`]: the caller owns a new fetch, or one was already under way.
pub(super) enum Begun {
    New(FlightHandle),
    Joined(FlightRx),
}

impl Flights {
    /// The fetch in flight for `key`, if any.
    pub(super) fn get(&self, key: &Key) -> Option<FlightRx> {
        lock(&self.by_key).get(key).cloned()
    }

    /// The fetches in flight whose key satisfies `matches`.
    pub(super) fn in_flight(&self, matches: impl Fn(&Key) -> bool) -> Vec<FlightRx> {
        lock(&self.by_key)
            .iter()
            .filter(|(k, _)| matches(k))
            .map(|(_, rx)| rx.clone())
            .collect()
    }

    #[cfg(test)]
    pub(super) fn contains(&self, key: &Key) -> bool {
        lock(&self.by_key).contains_key(key)
    }

    /// Marks an SSM path prefetch as under way until the guard drops.
    pub(super) fn begin_path(&self, cache: &Cache, prefix: &str) -> PathGuard {
        let (tx, rx) = watch::channel(false);
        lock(&self.paths).push((prefix.to_owned(), rx));
        PathGuard {
            cache: cache.clone(),
            prefix: prefix.to_owned(),
            tx,
        }
    }

    /// Waits until no path prefetch covering `name` is under way.
    pub(super) async fn wait_for_paths(&self, name: &str) {
        let pending: Vec<watch::Receiver<bool>> = lock(&self.paths)
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, rx)| rx.clone())
            .collect();
        for mut rx in pending {
            let _ = rx.wait_for(|done| *done).await;
        }
    }
}

/// Registers a fetch for `key` (fetched upstream with `fetch_id`) unless one is
/// under way. The owner of the returned handle must `finish` it.
pub(super) fn begin(cache: &Cache, key: Key, fetch_id: Arc<str>, how: FetchFor) -> Begun {
    let mut flights = lock(&cache.inner.flights.by_key);
    if let Some(rx) = flights.get(&key) {
        return Begun::Joined(rx.clone());
    }
    let (tx, rx) = watch::channel(None);
    flights.insert(key.clone(), rx);
    Begun::New(FlightHandle {
        cache: cache.clone(),
        key,
        fetch_id,
        how,
        tx: Some(tx),
    })
}

/// Single-flight fetch of one key in a task the cache owns; returns the receiver
/// to wait on.
pub(super) fn fly(cache: &Cache, key: Key, fetch_id: Arc<str>, how: FetchFor) -> FlightRx {
    match begin(cache, key, fetch_id, how) {
        Begun::Joined(rx) => rx,
        Begun::New(handle) => launch(cache, handle),
    }
}

/// Starts the fetch of a handle just registered, in a task the cache owns.
pub(super) fn launch(cache: &Cache, handle: FlightHandle) -> FlightRx {
    let rx = handle.subscribe();
    let upstream = cache.upstream().clone();
    cache.spawn(async move {
        let result = fetch_one(&*upstream, &handle.via(), &handle.key, &handle.fetch_id).await;
        let _ = handle.finish(result);
    });
    rx
}

/// Waits for a fetch in flight; a fetch abandoned without a result (shutdown,
/// refresh budget spent) reads as a transient `Aborted` error.
pub(super) async fn wait(mut rx: FlightRx) -> FlightResult {
    match rx.wait_for(Option::is_some).await {
        Ok(done) => done
            .clone()
            .unwrap_or_else(|| Err(UpstreamError::aborted("fetch abandoned"))),
        Err(_) => Err(UpstreamError::aborted("fetch abandoned")),
    }
}

/// Fetches one key upstream with `id` (the id the entry is refreshed with).
pub(super) async fn fetch_one(upstream: &dyn Upstream, via: &Via, key: &Key, id: &str) -> Result<Value, UpstreamError> {
    match key.source {
        Source::SecretsManager => upstream.get_secret(via, id, &key.selector).await,
        Source::Ssm => {
            upstream
                .get_parameter(via, id, &key.selector, key.decrypt.as_flag())
                .await
        }
    }
}

/// A fetch the owner must complete with [`FlightHandle::finish`].
pub(super) struct FlightHandle {
    cache: Cache,
    key: Key,
    fetch_id: Arc<str>,
    how: FetchFor,
    tx: Option<watch::Sender<Option<FlightResult>>>,
}

impl FlightHandle {
    pub(super) fn key(&self) -> &Key {
        &self.key
    }

    pub(super) fn fetch_id(&self) -> &Arc<str> {
        &self.fetch_id
    }

    /// How this fetch calls upstream: in its key's scope; once when a value is in
    /// hand (unless spreading is off: the naive baseline retries everything).
    pub(super) fn via(&self) -> Via {
        let attempts = if self.how.held && jitter::spreading() {
            Attempts::Once
        } else {
            Attempts::Retried
        };
        Via {
            scope: self.key.scope.clone(),
            attempts,
        }
    }

    pub(super) fn subscribe(&self) -> FlightRx {
        match &self.tx {
            Some(tx) => tx.subscribe(),
            None => watch::channel(None).1,
        }
    }

    /// Stores or records the result, then wakes everyone waiting on this key.
    pub(super) fn finish(mut self, result: Result<Value, UpstreamError>) -> FlightResult {
        let cache = self.cache.clone();
        let result = match result.and_then(|value| keep::admit(&cache, &self.key, &self.fetch_id, value)) {
            Ok(value) => {
                let value = keep::keep(&cache, &self.key, &self.fetch_id, value, self.how);
                debug!(
                    source = self.key.source.label(),
                    id = %self.fetch_id,
                    version = %value.version,
                    "fetched"
                );
                Ok(value)
            }
            Err(error) => {
                cache.inner.stats.upstream_error(error.kind);
                let now = Instant::now();
                cache.inner.store.record_failure(&self.key, &error, now);
                let negative_ttl = cache.inner.settings.negative_ttl;
                let caches = self.how.store && cache.inner.settings.caches(self.key.source);
                if error.kind.is_negative() && caches && !negative_ttl.is_zero() && !cache.closed() {
                    cache
                        .inner
                        .store
                        .remember_negative(&self.key, &error, now + negative_ttl);
                }
                warn!(
                    source = self.key.source.label(),
                    id = %self.fetch_id,
                    kind = error.kind.label(),
                    detail = %error.detail,
                    "upstream fetch failed"
                );
                Err(error)
            }
        };
        // Stored first, then unregistered: a newcomer finds either the flight or the entry.
        lock(&cache.inner.flights.by_key).remove(&self.key);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(result.clone()));
        }
        result
    }
}

impl FlightHandle {
    /// Ends the flight with a value the store already holds: nothing is fetched or
    /// stored again, and whoever joined meanwhile gets that value.
    pub(super) fn resolve(mut self, value: Arc<Value>) {
        lock(&self.cache.inner.flights.by_key).remove(&self.key);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(Ok(value)));
        }
    }
}

impl Drop for FlightHandle {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            lock(&self.cache.inner.flights.by_key).remove(&self.key);
        }
    }
}

/// Holds an SSM path prefetch open; dropping it releases the requests waiting on it.
pub(super) struct PathGuard {
    cache: Cache,
    prefix: String,
    tx: watch::Sender<bool>,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        let mut paths = lock(&self.cache.inner.flights.paths);
        if let Some(i) = paths.iter().position(|(p, _)| *p == self.prefix) {
            paths.swap_remove(i);
        }
        self.tx.send_replace(true);
    }
}
