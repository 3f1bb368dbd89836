//! The cache: one entry per key, filled by single-flight fetches, kept warm ahead of
//! expiry, served stale while upstream fails.
//!
//! The story of a key (`Cache::get`):
//! 1. the caller's [`Key`] is resolved through the alias map (`store`) to the id the
//!    value is stored under (a secret's ARN, a parameter's name);
//! 2. a fresh entry answers from memory, allocating nothing and holding no lock while
//!    it serves (`policy`);
//! 3. otherwise the key joins the fetch in flight for it or starts one, in a task the
//!    cache owns, so a caller that hangs up cancels nothing (`flight`); start-up
//!    prefetch (`prefetch`) and refresh-ahead (`refresh`) register their keys the same
//!    way and fetch them in as few calls as the APIs allow (`batch`);
//! 4. the result is stored under its canonical id, with aliases from every id that
//!    named it (`keep`), evicting the least recently used entries that were not
//!    prefetched once the entry bound or the byte budget is passed (`store`); a
//!    value larger than the whole budget is served but not cached;
//! 5. a transient failure with a value held within `MAX_STALE` serves that value,
//!    marked stale, and backs the entry off; a definitive one (not found, access
//!    denied) removes the entry and is returned (`policy`, `entry`), and is
//!    remembered for the negative TTL under the id that asked (`store`);
//! 6. with an allowlist, a fetched value whose identity (the name and ARN AWS
//!    returned) it does not permit is dropped before anything else sees it, and
//!    answers as a definitive `NotAllowed` failure (`flight`).
//!
//! Every [`Answer`] carries the identity AWS returned (name, ARN) so a caller can
//! decide on it before serving. `shutdown` cancels and waits for every task the
//! cache started; `wipe` then drops every value (each buffer is zeroized as its last
//! reference goes) and [`Cache::live_value_bytes`] says whether any is still alive.

mod batch;
mod entry;
mod flight;
mod jitter;
mod keep;
mod key;
mod listing;
mod policy;
mod prefetch;
mod refresh;
mod stats;
mod store;
mod wanted;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

pub use jitter::{reseed as reseed_jitter, set_spread};
pub use key::{Decrypt, Key};
pub use listing::under_path;
pub use prefetch::{Plan, Report};
pub use refresh::Refreshed;
pub use stats::{CacheStats, Outcome};

use crate::allow::AllowList;
use crate::backend::{Upstream, UpstreamError, Value, ValueMeter};
use crate::model::{Scope, SecretRef, Source};
use flight::Flights;
use store::Store;

/// What the cache needs to know, built once from the configuration.
#[derive(Clone, Debug)]
pub struct CacheSettings {
    pub capacity: usize,
    /// Heap bytes the entries may hold (value, identity, bookkeeping: `entry::cost`).
    pub budget: usize,
    pub enabled: bool,
    pub secrets_manager_ttl: Duration,
    pub ssm_ttl: Duration,
    pub max_stale: Duration,
    pub refresh_ahead: f64,
    pub refresh_now_interval: Duration,
    /// How long a definitive failure (not found, access denied, not allowed) is
    /// remembered; zero: not at all.
    pub negative_ttl: Duration,
    /// `SECRETS_SIDECAR_ALLOW`, applied to what AWS returns before anything is
    /// stored or served.
    pub allow: Option<AllowList>,
    /// `{tenant}` templates: a value AWS returns for another tenant's name is
    /// refused like one outside the allowlist.
    pub tenancy: Option<Arc<crate::tenant::Tenancy>>,
}

impl CacheSettings {
    pub fn ttl(&self, source: Source) -> Duration {
        match source {
            Source::SecretsManager => self.secrets_manager_ttl,
            Source::Ssm => self.ssm_ttl,
        }
    }

    /// Whether values of `source` are kept at all.
    pub fn caches(&self, source: Source) -> bool {
        self.enabled && self.capacity > 0 && !self.ttl(source).is_zero()
    }

    /// Unit tests' settings: `ttl` for both sources, refresh at half of it, a minute
    /// of stale-if-error, `refreshNow` once a second.
    #[cfg(test)]
    pub(crate) fn for_tests(capacity: usize, ttl: Duration) -> CacheSettings {
        CacheSettings {
            capacity,
            budget: 64 << 20,
            enabled: true,
            secrets_manager_ttl: ttl,
            ssm_ttl: ttl,
            max_stale: Duration::from_secs(60),
            refresh_ahead: 0.5,
            refresh_now_interval: Duration::from_secs(1),
            negative_ttl: Duration::ZERO,
            allow: None,
            tenancy: None,
        }
    }
}

/// A prefetch that does not fit the cache: what it needs against the bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Overflow {
    pub entries: usize,
    pub bytes: usize,
    pub capacity: usize,
    pub budget: usize,
}

/// How fresh an answer must be.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// A fresh cached value, or (expired) a new one with stale-if-error.
    Cached,
    /// `refreshNow`: go upstream, at most once per key per `refresh_now_interval`.
    Latest,
}

/// A value as answered, with how it was obtained.
#[derive(Clone, Debug)]
pub struct Answer {
    pub value: Arc<Value>,
    pub outcome: Outcome,
    /// Time since the value was fetched.
    pub age: Duration,
}

impl Answer {
    /// The name AWS returned for the value.
    pub fn name(&self) -> &str {
        &self.value.name
    }

    /// The full ARN AWS returned for the value.
    pub fn arn(&self) -> &str {
        &self.value.arn
    }
}

#[derive(Clone)]
pub struct Cache {
    inner: Arc<Inner>,
}

struct Inner {
    settings: CacheSettings,
    store: Store,
    flights: Flights,
    /// Prefetched keys still missing after the start-up deadline (`wanted`).
    wanted: wanted::WantedList,
    /// SSM path listings for GetParametersByPath on the SDK route (`listing`).
    listings: listing::Listings,
    upstream: Arc<dyn Upstream>,
    stats: CacheStats,
    /// Counts the bytes of every value the cache has produced that is still alive.
    meter: ValueMeter,
    /// Cost of the prefetched values too large to be cached at all (`keep`).
    unfit: std::sync::atomic::AtomicUsize,
    tasks: TaskTracker,
    cancel: CancellationToken,
}

impl Cache {
    pub fn new(settings: CacheSettings, upstream: Arc<dyn Upstream>) -> Cache {
        Cache {
            inner: Arc::new(Inner {
                store: Store::new(settings.capacity, settings.budget),
                settings,
                flights: Flights::default(),
                wanted: wanted::WantedList::default(),
                listings: listing::Listings::default(),
                upstream,
                stats: CacheStats::default(),
                meter: ValueMeter::default(),
                unfit: Default::default(),
                tasks: TaskTracker::new(),
                cancel: CancellationToken::new(),
            }),
        }
    }

    /// Answers one request for `key`.
    pub async fn get(&self, key: &Key, freshness: Freshness) -> Result<Answer, UpstreamError> {
        policy::get(self, key, freshness).await
    }

    /// Answers many keys at once: hits from memory, the rest fetched together in as
    /// few upstream calls as the APIs allow. Results are in the order of `keys`.
    pub async fn get_many(&self, keys: &[Key], freshness: Freshness) -> Vec<Result<Answer, UpstreamError>> {
        policy::get_many(self, keys, freshness).await
    }

    /// Registers the start-up keys and paths as fetches in flight without starting
    /// them, so requests that arrive before [`Cache::prefetch`] runs wait for it.
    pub fn plan_prefetch(&self, refs: &[SecretRef]) -> Plan {
        prefetch::plan(self, &Scope::HOME, refs)
    }

    /// [`Cache::plan_prefetch`] read in `scope` (a tenant's role).
    pub fn plan_prefetch_in(&self, scope: &Scope, refs: &[SecretRef]) -> Plan {
        prefetch::plan(self, scope, refs)
    }

    /// Runs a [`Plan`], giving up at `deadline`; what is unfinished then is reported
    /// as timed out.
    pub async fn prefetch(&self, plan: Plan, deadline: Instant) -> Report {
        prefetch::run(self, plan, deadline).await
    }

    /// What the prefetch stored against the cache's bounds, when it does not fit
    /// them: pinned entries are never evicted, so a plan past a bound must fail
    /// start-up rather than grow the cache past what the function can hold.
    pub fn overflow(&self) -> Option<Overflow> {
        let (entries, stored) = self.inner.store.pinned();
        let unfit = self.inner.unfit.load(std::sync::atomic::Ordering::Relaxed);
        let settings = &self.inner.settings;
        let overflow = Overflow {
            entries: entries + usize::from(unfit > 0),
            bytes: stored + unfit,
            capacity: settings.capacity,
            budget: settings.budget,
        };
        (overflow.bytes > overflow.budget || overflow.entries > overflow.capacity).then_some(overflow)
    }

    /// Refreshes, within `budget`, the entries past their refresh-ahead point.
    pub async fn refresh_due(&self, budget: Duration) -> Refreshed {
        refresh::refresh_due(self, budget).await
    }

    /// The earliest refresh-ahead point among entries worth keeping warm (standalone timer).
    pub fn next_refresh_at(&self) -> Option<Instant> {
        let stored = self.inner.store.next_refresh_at();
        match (stored, self.inner.wanted.next_at()) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Prefetched keys still missing, fetched again by refresh-ahead until stored.
    pub fn wanted(&self) -> usize {
        self.inner.wanted.len()
    }

    /// The names of every parameter under `path` (recursively) in `scope`, as
    /// GetParametersByPath lists them; each one's value is then in the cache under
    /// `Key::new(Ssm, name, Current, decrypt)` (unless evicted since, or caching is off).
    pub async fn list_path(&self, scope: &Scope, path: &str, decrypt: bool) -> Result<Arc<[Arc<str>]>, UpstreamError> {
        listing::list_path(self, scope, path, decrypt).await
    }

    /// Drops what a write to `id` made stale in `scope`: its entries (by any id that
    /// named them), the aliases leading to them, the failures remembered for the
    /// source, and (for a parameter) the path listings.
    pub fn invalidate(&self, scope: &Scope, source: Source, id: &str) {
        let dropped = self.inner.store.invalidate(scope, source, id);
        if source == Source::Ssm {
            self.inner.listings.forget(scope);
        }
        tracing::debug!(source = source.label(), id, dropped, "invalidated after a write");
    }

    /// [`Cache::invalidate`] after a write AWS has confirmed, made safe against
    /// fetches already in flight: one that started before the write may carry the
    /// old value and would store it after the first drop. So the fetches of the
    /// source in flight in `scope` are waited for (at most `within`), and what they
    /// stored is dropped again: at worst one extra fetch, never a stale value kept
    /// for a TTL.
    pub async fn invalidate_after_write(&self, scope: &Scope, source: Source, id: &str, within: std::time::Duration) {
        self.invalidate(scope, source, id);
        let pending = self
            .inner
            .flights
            .in_flight(|k| k.scope == *scope && k.source == source);
        if pending.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(within, async {
            for rx in pending {
                let _ = flight::wait(rx).await;
            }
        })
        .await;
        self.invalidate(scope, source, id);
    }

    /// Drops every value (each buffer is zeroized as its last reference goes).
    pub fn wipe(&self) {
        self.inner.wanted.clear();
        self.inner.listings.clear();
        self.inner.store.clear();
    }

    /// Cancels every task the cache started (fetches, batches) and waits for them
    /// until `deadline`. Nothing is stored after this begins.
    pub async fn shutdown(&self, deadline: tokio::time::Instant) {
        self.inner.cancel.cancel();
        self.inner.tasks.close();
        if tokio::time::timeout_at(deadline, self.inner.tasks.wait())
            .await
            .is_err()
        {
            tracing::warn!(
                tasks = self.inner.tasks.len(),
                "cache tasks still running at the end of the shutdown budget"
            );
        }
    }

    pub fn settings(&self) -> &CacheSettings {
        &self.inner.settings
    }

    pub fn stats(&self) -> &CacheStats {
        &self.inner.stats
    }

    pub fn len(&self) -> usize {
        self.inner.store.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Heap bytes the entries hold, as counted against the byte budget.
    pub fn bytes(&self) -> usize {
        self.inner.store.bytes()
    }

    /// Bytes of the values this cache produced that are still alive anywhere (stored,
    /// or held by a request in progress). Zero after `shutdown` and `wipe`.
    pub fn live_value_bytes(&self) -> usize {
        self.inner.meter.live_bytes()
    }

    fn upstream(&self) -> &Arc<dyn Upstream> {
        &self.inner.upstream
    }

    fn closed(&self) -> bool {
        self.inner.cancel.is_cancelled()
    }

    /// Runs `fut` as a task that shutdown cancels and waits for.
    fn spawn(&self, fut: impl Future<Output = ()> + Send + 'static) {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.spawn(async move {
            tokio::select! {
                () = cancel.cancelled() => {}
                () = fut => {}
            }
        });
    }

    /// `fut` wrapped so that the cache's tracker counts it and shutdown cancels it
    /// (`None` then), for work spawned into a caller's `JoinSet`.
    fn tracked<T>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Option<T>> + Send + 'static
    where
        T: Send + 'static,
    {
        let cancel = self.inner.cancel.clone();
        self.inner.tasks.track_future(async move {
            tokio::select! {
                () = cancel.cancelled() => None,
                out = fut => Some(out),
            }
        })
    }
}

#[cfg(test)]
mod tests;
