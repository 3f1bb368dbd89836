//! The cache: fresh hits from memory, one upstream call per key however many ask
//! (single-flight), stale-if-error with backoff, refresh-ahead bookkeeping, LRU-like
//! eviction at the size bound.
//!
//! How a lookup goes (`Cache::get`):
//! - fresh entry: answered from memory, no lock, no allocation beyond the key;
//! - no entry, an expired one, or `refreshNow`: joins the fetch in flight for that
//!   key or starts one in a tracked task (so a caller that hangs up does not cancel
//!   the fetch the others wait on);
//! - the fetch fails transiently and a value is held within `MAX_STALE`: the held
//!   value is served, marked stale, and the entry backs off before the next try;
//! - definitive failures (not found, access denied) remove the entry and are returned.
//!
//! Entries are keyed by the value's canonical id (ARN for secrets, name for
//! parameters); the alias maps send names, partial ARNs and ARNs there.

mod entry;
mod key;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

pub use entry::{backoff, Entry, BACKOFF_BASE, BACKOFF_MAX};
pub use key::{Decrypt, Key};

use crate::backend::{ErrorKind, Upstream, UpstreamError, Value};
use crate::config::Config;
use crate::metrics::{Metrics, Outcome};
use crate::query::Lookup;
use crate::refs::Source;

/// The cache's view of the configuration.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub capacity: usize,
    pub enabled: bool,
    pub secrets_manager_ttl: Duration,
    pub ssm_ttl: Duration,
    pub max_stale: Duration,
    pub refresh_ahead: f64,
    pub refresh_now_interval: Duration,
}

impl CacheSettings {
    pub fn from_config(c: &Config) -> Self {
        CacheSettings {
            capacity: c.cache_size,
            enabled: c.cache_enabled,
            secrets_manager_ttl: c.secrets_manager.ttl,
            ssm_ttl: c.ssm.ttl,
            max_stale: c.max_stale,
            refresh_ahead: c.refresh_ahead,
            refresh_now_interval: c.refresh_now_interval,
        }
    }

    pub fn ttl(&self, source: Source) -> Duration {
        match source {
            Source::SecretsManager => self.secrets_manager_ttl,
            Source::Ssm => self.ssm_ttl,
        }
    }

    pub fn caches(&self, source: Source) -> bool {
        self.enabled && self.capacity > 0 && !self.ttl(source).is_zero()
    }
}

/// A value as served, with how it was obtained.
#[derive(Clone, Debug)]
pub struct Served {
    pub value: Arc<Value>,
    pub outcome: Outcome,
    /// Time since the value was fetched.
    pub age: Duration,
}

impl Served {
    fn from_entry(entry: &Entry, outcome: Outcome, now: Instant) -> Served {
        Served {
            value: entry.value.clone(),
            outcome,
            age: now.saturating_duration_since(entry.fetched_at),
        }
    }

    fn fetched(value: Arc<Value>, outcome: Outcome) -> Served {
        Served {
            value,
            outcome,
            age: Duration::ZERO,
        }
    }
}

type FlightResult = Result<Arc<Value>, UpstreamError>;
type FlightRx = watch::Receiver<Option<FlightResult>>;

/// The outcome of [`Cache::begin`]: the caller owns a new fetch, or one was already under way.
pub enum Begun {
    New(FlightHandle),
    Joined(FlightRx),
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

/// foldhash instead of SipHash: several times cheaper per lookup, and still seeded
/// per process (only token holders choose keys, within the allowlist).
type Map<K, V> = DashMap<K, V, RandomState>;

struct Inner {
    settings: CacheSettings,
    entries: Map<Key, Arc<Entry>>,
    /// Per source: requested id → canonical id.
    aliases: [Map<Box<str>, Arc<str>>; 2],
    flights: Mutex<HashMap<Key, FlightRx>>,
    /// SSM path prefetches under way; a request for a name below one waits for it.
    paths: Mutex<Vec<(String, watch::Receiver<bool>)>>,
    upstream: Arc<dyn Upstream>,
    metrics: Arc<Metrics>,
    tasks: TaskTracker,
    cancel: CancellationToken,
    epoch: Instant,
}

/// Locks a std mutex, surviving poisoning: the maps it guards stay consistent
/// because no code panics while holding them.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Waits for a fetch in flight; a fetch abandoned without a result (shutdown,
/// refresh budget spent) reads as a transient `Aborted` error.
async fn wait(mut rx: FlightRx) -> FlightResult {
    match rx.wait_for(Option::is_some).await {
        Ok(done) => done
            .clone()
            .unwrap_or_else(|| Err(UpstreamError::aborted("fetch abandoned"))),
        Err(_) => Err(UpstreamError::aborted("fetch abandoned")),
    }
}

impl Cache {
    pub fn new(settings: CacheSettings, upstream: Arc<dyn Upstream>, metrics: Arc<Metrics>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                settings,
                entries: Map::default(),
                aliases: [Map::default(), Map::default()],
                flights: Mutex::new(HashMap::new()),
                paths: Mutex::new(Vec::new()),
                upstream,
                metrics,
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
                epoch: Instant::now(),
            }),
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    pub fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.inner.upstream
    }

    pub fn len(&self) -> usize {
        self.inner.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.inner.entries.is_empty()
    }

    fn now_ms(&self, now: Instant) -> u64 {
        u64::try_from(now.saturating_duration_since(self.inner.epoch).as_millis()).unwrap_or(u64::MAX)
    }

    /// Answers one request.
    pub async fn get(&self, lookup: &Lookup) -> Result<Served, UpstreamError> {
        let now = Instant::now();
        let key = Key::for_lookup(lookup, self.resolve(lookup.source, &lookup.id));
        if !self.inner.settings.caches(lookup.source) {
            let value = self.fly(key, Arc::from(lookup.id.as_str()), false, false).await?;
            return Ok(Served::fetched(value, Outcome::Bypass));
        }
        let Some((stored_key, entry)) = self.find(&key) else {
            return self.miss(key, lookup).await;
        };
        entry.touch(self.now_ms(now));
        if lookup.refresh_now {
            return self.forced(stored_key, entry, now).await;
        }
        if now < entry.fresh_until {
            return Ok(Served::from_entry(&entry, Outcome::Hit, now));
        }
        if entry.backing_off(now) {
            return self.stale_or_error(&entry, now);
        }
        self.revalidate(stored_key, entry, now, false).await
    }

    /// The entry for `key`, or the decryption-independent one for a parameter.
    pub fn find(&self, key: &Key) -> Option<(Key, Arc<Entry>)> {
        if let Some(e) = self.inner.entries.get(key) {
            return Some((key.clone(), e.value().clone()));
        }
        if key.source == Source::Ssm && key.decrypt != Decrypt::Irrelevant {
            let k = key.with_decrypt(Decrypt::Irrelevant);
            let e = self.inner.entries.get(&k).map(|e| e.value().clone());
            return e.map(|e| (k, e));
        }
        None
    }

    /// `key` with its id resolved through the aliases.
    pub fn canonical(&self, key: &Key) -> Key {
        key.with_id(self.resolve(key.source, &key.id))
    }

    fn resolve(&self, source: Source, id: &str) -> Arc<str> {
        match self.inner.aliases[source as usize].get(id) {
            Some(canonical) => canonical.value().clone(),
            None => Arc::from(id),
        }
    }

    async fn miss(&self, key: Key, lookup: &Lookup) -> Result<Served, UpstreamError> {
        if key.source == Source::Ssm {
            // A path prefetch covering this name may be about to store it.
            self.wait_for_paths(&lookup.id).await;
            if let Some((_, entry)) = self.find(&key) {
                let now = Instant::now();
                entry.touch(self.now_ms(now));
                return Ok(Served::from_entry(&entry, Outcome::Hit, now));
            }
            // A decrypted fetch in flight answers a plain request too, unless the
            // parameter turns out to be a SecureString.
            if key.decrypt == Decrypt::No {
                if let Some(rx) = self.flight_rx(&key.with_decrypt(Decrypt::Yes)) {
                    if let Ok(value) = wait(rx).await {
                        if !value.secure {
                            return Ok(Served::fetched(value, Outcome::Miss));
                        }
                    }
                }
            }
        }
        let value = self.fly(key, Arc::from(lookup.id.as_str()), false, true).await?;
        Ok(Served::fetched(value, Outcome::Miss))
    }

    /// `refreshNow`: at most one forced upstream call per key per interval; within
    /// it, join the forced fetch in flight or serve what it stored.
    async fn forced(&self, key: Key, entry: Arc<Entry>, now: Instant) -> Result<Served, UpstreamError> {
        let interval = self.inner.settings.refresh_now_interval;
        let limited = entry.forced_at.is_some_and(|t| now < t + interval);
        if limited && now < entry.fresh_until {
            if let Some(rx) = self.flight_rx(&key) {
                return match wait(rx).await {
                    Ok(value) => Ok(Served::fetched(value, Outcome::Miss)),
                    Err(_) => Ok(Served::from_entry(&entry, Outcome::Stale, now)),
                };
            }
            return Ok(Served::from_entry(&entry, Outcome::Hit, now));
        }
        self.revalidate(key, entry, now, true).await
    }

    async fn revalidate(
        &self,
        key: Key,
        entry: Arc<Entry>,
        now: Instant,
        forced: bool,
    ) -> Result<Served, UpstreamError> {
        match self.fly(key, entry.fetch_id.clone(), forced, true).await {
            Ok(value) => Ok(Served::fetched(value, Outcome::Miss)),
            Err(e) if e.kind.is_transient() && entry.within_stale_limit(now, self.inner.settings.max_stale) => {
                Ok(Served::from_entry(&entry, Outcome::Stale, now))
            }
            Err(e) => Err(e),
        }
    }

    fn stale_or_error(&self, entry: &Entry, now: Instant) -> Result<Served, UpstreamError> {
        if entry.within_stale_limit(now, self.inner.settings.max_stale) {
            return Ok(Served::from_entry(entry, Outcome::Stale, now));
        }
        Err(entry
            .last_error
            .clone()
            .unwrap_or_else(|| UpstreamError::new(ErrorKind::Unavailable, "upstream is failing")))
    }

    fn flight_rx(&self, key: &Key) -> Option<FlightRx> {
        lock(&self.inner.flights).get(key).cloned()
    }

    /// Registers a fetch for `key` unless one is under way. The owner of the returned
    /// handle must `finish` it; dropping it abandons the fetch and wakes the waiters.
    pub fn begin(&self, key: Key, fetch_id: Arc<str>, how: FetchFor) -> Begun {
        let mut flights = lock(&self.inner.flights);
        if let Some(rx) = flights.get(&key) {
            return Begun::Joined(rx.clone());
        }
        let (tx, rx) = watch::channel(None);
        flights.insert(key.clone(), rx);
        Begun::New(FlightHandle {
            cache: self.clone(),
            key,
            fetch_id,
            how,
            tx: Some(tx),
        })
    }

    /// Single-flight fetch of one key in a tracked task.
    fn fly(
        &self,
        key: Key,
        fetch_id: Arc<str>,
        forced: bool,
        store: bool,
    ) -> impl Future<Output = FlightResult> + Send {
        let how = FetchFor {
            forced,
            store,
            pinned: false,
            served: true,
        };
        let rx = match self.begin(key, fetch_id, how) {
            Begun::Joined(rx) => rx,
            Begun::New(handle) => {
                let rx = handle.subscribe();
                let upstream = self.inner.upstream.clone();
                self.spawn(async move {
                    let result = fetch_one(&*upstream, &handle.key, &handle.fetch_id).await;
                    let _ = handle.finish(result);
                });
                rx
            }
        };
        wait(rx)
    }

    /// Runs `fut` as a task that shutdown cancels and waits for.
    pub fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = fut => {}
            }
        });
    }

    /// Stores a fetched value under its canonical key and records the aliases that lead there.
    pub fn store(&self, flight_key: &Key, fetch_id: &Arc<str>, value: Arc<Value>, how: FetchFor) {
        let settings = &self.inner.settings;
        let source = flight_key.source;
        if !settings.caches(source) {
            return;
        }
        let now = Instant::now();
        let canonical = canonical_id(source, &value);
        let decrypt = match (source, value.secure, flight_key.decrypt) {
            (Source::SecretsManager, _, _) | (Source::Ssm, false, _) => Decrypt::Irrelevant,
            (Source::Ssm, true, Decrypt::No) => Decrypt::No,
            (Source::Ssm, true, _) => Decrypt::Yes,
        };
        let key = Key {
            id: canonical.clone(),
            decrypt,
            ..flight_key.clone()
        };
        self.alias(source, fetch_id, &canonical);
        self.alias(source, &value.name, &canonical);
        self.alias(source, &value.arn, &canonical);
        if key != *flight_key {
            self.inner.entries.remove(flight_key);
        }
        let prev = self.inner.entries.get(&key).map(|e| e.value().clone());
        let mut entry = Entry::fresh(
            value,
            fetch_id.clone(),
            now,
            settings.ttl(source),
            settings.refresh_ahead,
            self.now_ms(now),
        );
        entry.forced_at = if how.forced {
            Some(now)
        } else {
            prev.as_ref().and_then(|p| p.forced_at)
        };
        entry.pinned = how.pinned || prev.as_ref().is_some_and(|p| p.pinned);
        if how.served {
            entry.touch(self.now_ms(now));
        } else if let Some(p) = &prev {
            entry.inherit_access(p.last_access());
        }
        self.inner.entries.insert(key, Arc::new(entry));
        self.enforce_capacity();
        self.inner.metrics.set_entries(self.inner.entries.len());
    }

    fn alias(&self, source: Source, from: &str, to: &Arc<str>) {
        if from == &**to {
            return;
        }
        let map = &self.inner.aliases[source as usize];
        // Aliases are only a shortcut: when they outgrow the cache, forget them all.
        if map.len() > 4 * self.inner.settings.capacity + 64 {
            map.clear();
        }
        if map.get(from).is_none_or(|t| t.value() != to) {
            map.insert(from.into(), to.clone());
        }
    }

    /// Records a failed fetch of `key`: back off (transient) or drop the entry (definitive).
    fn record_failure(&self, key: &Key, error: &UpstreamError) {
        self.inner.metrics.upstream_error(error.kind);
        let existing = self.inner.entries.get(key).map(|e| e.value().clone());
        let Some(entry) = existing else {
            return;
        };
        if error.kind.is_transient() {
            let failed = entry.failed(Instant::now(), error.clone());
            self.inner.entries.insert(key.clone(), Arc::new(failed));
        } else {
            self.inner.entries.remove(key);
            self.inner.metrics.set_entries(self.inner.entries.len());
        }
    }

    /// Evicts the least recently used entries once the size bound is passed. Large
    /// caches evict 5% at a time so the scan is paid once per many inserts.
    fn enforce_capacity(&self) {
        let cap = self.inner.settings.capacity;
        if self.inner.entries.len() <= cap {
            return;
        }
        let target = if cap >= 100 { cap - cap / 20 } else { cap };
        let mut ages: Vec<(u64, Key)> = self
            .inner
            .entries
            .iter()
            .map(|e| (e.value().last_access(), e.key().clone()))
            .collect();
        let excess = ages.len().saturating_sub(target);
        if excess == 0 {
            return;
        }
        ages.select_nth_unstable_by_key(excess - 1, |(t, _)| *t);
        let mut evicted = 0;
        for (_, key) in ages.into_iter().take(excess) {
            if self.inner.entries.remove(&key).is_some() {
                evicted += 1;
            }
        }
        self.inner.metrics.evicted(evicted);
        debug!(evicted, capacity = cap, "evicted least recently used entries");
    }

    /// Entries whose refresh-ahead point has passed and that are worth keeping warm:
    /// prefetched ones, and ones used since their last fetch.
    pub fn due_for_refresh(&self, now: Instant) -> Vec<(Key, Arc<str>)> {
        let flights = lock(&self.inner.flights);
        self.inner
            .entries
            .iter()
            .filter(|e| {
                let entry = e.value();
                now >= entry.refresh_at
                    && !entry.backing_off(now)
                    && (entry.pinned || entry.used())
                    && !flights.contains_key(e.key())
            })
            .map(|e| (e.key().clone(), e.value().fetch_id.clone()))
            .collect()
    }

    /// The earliest refresh-ahead point among entries worth keeping warm (standalone timer).
    pub fn next_refresh_at(&self) -> Option<Instant> {
        self.inner
            .entries
            .iter()
            .filter(|e| e.value().pinned || e.value().used())
            .map(|e| {
                e.value()
                    .retry_at
                    .unwrap_or(e.value().refresh_at)
                    .max(e.value().refresh_at)
            })
            .min()
    }

    /// Marks an SSM path prefetch as under way until the guard drops.
    pub fn begin_path(&self, prefix: &str) -> PathGuard {
        let (tx, rx) = watch::channel(false);
        lock(&self.inner.paths).push((prefix.to_owned(), rx));
        PathGuard {
            cache: self.clone(),
            prefix: prefix.to_owned(),
            tx,
        }
    }

    async fn wait_for_paths(&self, name: &str) {
        let pending: Vec<watch::Receiver<bool>> = lock(&self.inner.paths)
            .iter()
            .filter(|(prefix, _)| name.starts_with(prefix.as_str()))
            .map(|(_, rx)| rx.clone())
            .collect();
        for mut rx in pending {
            let _ = rx.wait_for(|done| *done).await;
        }
    }

    /// Drops every value (each buffer is zeroized as its last reference goes).
    pub fn wipe(&self) {
        self.inner.entries.clear();
        for map in &self.inner.aliases {
            map.clear();
        }
        self.inner.metrics.set_entries(0);
    }

    /// Cancels fetches in flight and waits (bounded) for their tasks to end.
    pub async fn shutdown(&self, within: Duration) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        let _ = tokio::time::timeout(within, self.inner.tasks.wait()).await;
    }
}

/// Fetches one key upstream with the id refreshes use.
pub async fn fetch_one(upstream: &dyn Upstream, key: &Key, id: &str) -> Result<Value, UpstreamError> {
    match key.source {
        Source::SecretsManager => upstream.get_secret(id, &key.selector).await,
        Source::Ssm => upstream.get_parameter(id, &key.selector, key.decrypt.as_flag()).await,
    }
}

/// Secrets are identified by ARN (names can be reused after deletion, and partial
/// ARNs exist); parameters by name (unique, and unambiguous where ARNs are not).
fn canonical_id(source: Source, value: &Value) -> Arc<str> {
    match source {
        Source::SecretsManager => value.arn.clone(),
        Source::Ssm => value.name.clone(),
    }
}

/// Why a fetch happens, which decides what its result does to the entry.
#[derive(Clone, Copy, Debug, Default)]
pub struct FetchFor {
    /// A `refreshNow` request: starts the rate-limit interval.
    pub forced: bool,
    /// Keep the result (false when caching is off for the source).
    pub store: bool,
    /// Prefetched: refresh-ahead keeps it warm even when unused.
    pub pinned: bool,
    /// A request is waiting for it, so the new value counts as used.
    pub served: bool,
}

impl FetchFor {
    /// Start-up prefetch.
    pub const PREFETCH: FetchFor = FetchFor {
        forced: false,
        store: true,
        pinned: true,
        served: false,
    };
    /// Background refresh-ahead.
    pub const REFRESH: FetchFor = FetchFor {
        forced: false,
        store: true,
        pinned: false,
        served: false,
    };
}

/// A fetch the owner must complete with [`FlightHandle::finish`].
pub struct FlightHandle {
    cache: Cache,
    key: Key,
    fetch_id: Arc<str>,
    how: FetchFor,
    tx: Option<watch::Sender<Option<FlightResult>>>,
}

impl FlightHandle {
    pub fn key(&self) -> &Key {
        &self.key
    }

    pub fn fetch_id(&self) -> &Arc<str> {
        &self.fetch_id
    }

    fn subscribe(&self) -> FlightRx {
        match &self.tx {
            Some(tx) => tx.subscribe(),
            None => watch::channel(None).1,
        }
    }

    /// Stores or records the result, then wakes everyone waiting on this key.
    pub fn finish(mut self, result: Result<Value, UpstreamError>) -> FlightResult {
        let cache = self.cache.clone();
        let result = match result {
            Ok(value) => {
                let value = Arc::new(value);
                if self.how.store {
                    cache.store(&self.key, &self.fetch_id, value.clone(), self.how);
                }
                debug!(
                    source = self.key.source.label(),
                    id = %self.fetch_id,
                    version = %value.version,
                    "fetched"
                );
                Ok(value)
            }
            Err(error) => {
                cache.record_failure(&self.key, &error);
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
        lock(&cache.inner.flights).remove(&self.key);
        if let Some(tx) = self.tx.take() {
            tx.send_replace(Some(result.clone()));
        }
        result
    }
}

impl Drop for FlightHandle {
    fn drop(&mut self) {
        if self.tx.take().is_some() {
            lock(&self.cache.inner.flights).remove(&self.key);
        }
    }
}

/// Holds an SSM path prefetch open; dropping it releases the requests waiting on it.
pub struct PathGuard {
    cache: Cache,
    prefix: String,
    tx: watch::Sender<bool>,
}

impl Drop for PathGuard {
    fn drop(&mut self) {
        let mut paths = lock(&self.cache.inner.paths);
        if let Some(i) = paths.iter().position(|(p, _)| *p == self.prefix) {
            paths.swap_remove(i);
        }
        self.tx.send_replace(true);
    }
}

#[cfg(test)]
mod tests;
