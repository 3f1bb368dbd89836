//! Path listings: which parameters live under an SSM path, so GetParametersByPath
//! on the SDK route is answered from the cache page by page.
//!
//! A listing is fetched whole (every page of GetParametersByPath, recursively) and
//! keeps only names: each parameter it returned is stored as its own entry, under
//! the same key GetParameter and GetParameters use, so a value is held once however
//! it was asked for, is checked by the allowlist on its own, and is refreshed ahead
//! like any used entry. A listing lives for the SSM TTL; past its refresh-ahead
//! point it is refetched in the background while the old one answers, and a
//! transient failure serves it for `MAX_STALE` more. One fetch per listing at a
//! time: later callers wait for it and take its result.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::time::Instant;

use super::keep;
use super::keep::FetchFor;
use super::{Cache, Key};
use crate::backend::{Attempts, UpstreamError, Via};
use crate::model::{Scope, Selector, Source};

/// GetParametersByPath pages fetched for one listing, at most.
const MAX_PAGES: usize = 1000;
/// Listings remembered at once; past this, all are forgotten (they are shortcuts).
const MAX_LISTINGS: usize = 256;

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct ListingKey {
    scope: Scope,
    path: Box<str>,
    decrypt: bool,
}

#[derive(Clone)]
struct Listing {
    names: Arc<[Arc<str>]>,
    fetched: Instant,
}

#[derive(Default)]
pub(super) struct Listings {
    done: Mutex<HashMap<ListingKey, Listing>>,
    /// One lock per listing being fetched: the single flight.
    fetching: Mutex<HashMap<ListingKey, Arc<tokio::sync::Mutex<()>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Listings {
    fn get(&self, key: &ListingKey) -> Option<Listing> {
        lock(&self.done).get(key).cloned()
    }

    fn put(&self, key: ListingKey, listing: Listing) {
        let mut done = lock(&self.done);
        if done.len() >= MAX_LISTINGS && !done.contains_key(&key) {
            done.clear();
        }
        done.insert(key, listing);
    }

    fn flight(&self, key: &ListingKey) -> Arc<tokio::sync::Mutex<()>> {
        let mut fetching = lock(&self.fetching);
        if fetching.len() >= MAX_LISTINGS {
            fetching.retain(|_, m| Arc::strong_count(m) > 1);
        }
        fetching.entry(key.clone()).or_default().clone()
    }

    /// Forgets every listing of `scope` (a parameter was written there).
    pub(super) fn forget(&self, scope: &Scope) {
        lock(&self.done).retain(|k, _| k.scope != *scope);
    }

    pub(super) fn clear(&self) {
        lock(&self.done).clear();
    }
}

/// Whether `name` lies under `path`; `recursive: false` keeps only its direct children.
pub fn under_path(path: &str, name: &str, recursive: bool) -> bool {
    let base = path.trim_end_matches('/');
    let Some(rest) = name.strip_prefix(base).and_then(|r| r.strip_prefix('/')) else {
        return false;
    };
    !rest.is_empty() && (recursive || !rest.contains('/'))
}

/// The names of every parameter under `path` (recursively) in `scope`, as
/// GetParametersByPath lists them; each one's value is then in the cache under
/// `Key::new(Ssm, name, Current, decrypt)` (unless evicted since, or caching is off).
pub(super) async fn list_path(
    cache: &Cache,
    scope: &Scope,
    path: &str,
    decrypt: bool,
) -> Result<Arc<[Arc<str>]>, UpstreamError> {
    let key = ListingKey {
        scope: scope.clone(),
        path: path.into(),
        decrypt,
    };
    let settings = &cache.inner.settings;
    let ttl = settings.ttl(Source::Ssm);
    if !settings.caches(Source::Ssm) {
        return fetch_listing(cache, &key).await;
    }
    let now = Instant::now();
    let held = cache.inner.listings.get(&key);
    if let Some(l) = &held {
        let age = now.saturating_duration_since(l.fetched);
        if age < ttl {
            if age >= ttl.mul_f64(settings.refresh_ahead) {
                refresh_listing_behind(cache, key);
            }
            return Ok(l.names.clone());
        }
    }
    let flight = cache.inner.listings.flight(&key);
    let _turn = flight.lock().await;
    // Someone else's fetch may have finished while this one waited.
    if let Some(l) = cache.inner.listings.get(&key) {
        if held.as_ref().is_none_or(|h| h.fetched != l.fetched) && l.fetched.elapsed() < ttl {
            return Ok(l.names.clone());
        }
    }
    match fetch_listing(cache, &key).await {
        Ok(names) => {
            keep_listing(cache, key, names.clone());
            Ok(names)
        }
        Err(e) if e.kind.is_transient() => match held {
            Some(l) if l.fetched.elapsed() < ttl + settings.max_stale => Ok(l.names),
            _ => Err(e),
        },
        Err(e) => Err(e),
    }
}

fn keep_listing(cache: &Cache, key: ListingKey, names: Arc<[Arc<str>]>) {
    if cache.closed() {
        return;
    }
    cache.inner.listings.put(
        key,
        Listing {
            names,
            fetched: Instant::now(),
        },
    );
}

/// Refetches a listing past its refresh-ahead point without anyone waiting,
/// unless a fetch of it is already under way.
fn refresh_listing_behind(cache: &Cache, key: ListingKey) {
    let flight = cache.inner.listings.flight(&key);
    let Ok(turn) = flight.clone().try_lock_owned() else {
        return;
    };
    let owned = cache.clone();
    cache.spawn(async move {
        let _turn = turn;
        if let Ok(names) = fetch_listing(&owned, &key).await {
            keep_listing(&owned, key, names);
        }
    });
}

/// Every page of the listing, each parameter checked by the allowlist and kept.
async fn fetch_listing(cache: &Cache, key: &ListingKey) -> Result<Arc<[Arc<str>]>, UpstreamError> {
    let upstream = cache.upstream().clone();
    let via = Via {
        scope: key.scope.clone(),
        attempts: Attempts::Retried,
    };
    let store = cache.settings().caches(Source::Ssm);
    let mut names = Vec::new();
    let mut token: Option<String> = None;
    for _ in 0..MAX_PAGES {
        let page = upstream
            .get_parameters_by_path(&via, &key.path, key.decrypt, token.as_deref())
            .await?;
        for value in page.values {
            let name = value.name.clone();
            // What the path does not cover is not listed (whatever an upstream
            // that matches by string prefix returns).
            if !under_path(&key.path, &name, true) {
                continue;
            }
            let item =
                Key::new(Source::Ssm, name.clone(), Selector::Current, key.decrypt).with_scope(key.scope.clone());
            // Each item is checked like any fetched value; a refused one is not listed.
            let Ok(value) = keep::admit(cache, &item, &name, value) else {
                continue;
            };
            keep::keep(cache, &item, &name, value, FetchFor::request(false, store));
            names.push(name);
        }
        match page.next_token {
            Some(t) => token = Some(t),
            None => break,
        }
    }
    Ok(names.into())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::cache::{CacheSettings, Freshness, Outcome};
    use std::time::Duration;

    fn setup() -> (Cache, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        for name in ["/app/a", "/app/b", "/app/deep/c", "/apple", "/other/x"] {
            fake.put_param(name, "SecureString", "v");
        }
        let cache = Cache::new(CacheSettings::for_tests(100, Duration::from_secs(60)), fake.clone());
        (cache, fake)
    }

    #[test]
    fn under_path_keeps_direct_children_unless_recursive() {
        assert!(under_path("/app", "/app/a", false));
        assert!(under_path("/app/", "/app/a", false));
        assert!(!under_path("/app", "/app/deep/c", false));
        assert!(under_path("/app", "/app/deep/c", true));
        assert!(
            !under_path("/app", "/apple", true),
            "a prefix of a segment is not under the path"
        );
        assert!(!under_path("/app", "/app", true));
        assert!(under_path("/", "/app", false));
        assert!(!under_path("/", "/app/a", false));
    }

    #[tokio::test]
    async fn a_listing_is_fetched_once_and_its_values_are_entries() {
        let (cache, fake) = setup();
        let names = cache.list_path(&Scope::HOME, "/app", true).await.expect("listing");
        let mut names: Vec<&str> = names.iter().map(|n| &**n).collect();
        names.sort_unstable();
        assert_eq!(names, ["/app/a", "/app/b", "/app/deep/c"]);
        let calls = fake.calls();
        assert!(calls >= 1);
        cache.list_path(&Scope::HOME, "/app", true).await.expect("again");
        let key = Key::new(Source::Ssm, Arc::from("/app/b"), Selector::Current, true);
        let answer = cache.get(&key, Freshness::Cached).await.expect("value");
        assert_eq!(answer.outcome, Outcome::Hit, "the listing stored each value");
        assert_eq!(fake.calls(), calls, "no call for the second listing or the value");
    }

    #[tokio::test]
    async fn a_write_forgets_the_listing_and_the_entry() {
        let (cache, fake) = setup();
        cache.list_path(&Scope::HOME, "/app", true).await.expect("listing");
        let calls = fake.calls();
        fake.put_param("/app/new", "String", "n");
        cache.invalidate(&Scope::HOME, Source::Ssm, "/app/new");
        let names = cache.list_path(&Scope::HOME, "/app", true).await.expect("listing");
        assert!(names.iter().any(|n| &**n == "/app/new"));
        assert!(fake.calls() > calls, "listed again after the write");

        fake.put_param("/app/a", "SecureString", "changed");
        cache.invalidate(&Scope::HOME, Source::Ssm, "/app/a");
        let key = Key::new(Source::Ssm, Arc::from("/app/a"), Selector::Current, true);
        let answer = cache.get(&key, Freshness::Cached).await.expect("value");
        assert_eq!(answer.outcome, Outcome::Miss);
    }

    #[tokio::test]
    async fn a_write_waits_for_fetches_in_flight_and_drops_what_they_stored() {
        let (cache, fake) = setup();
        fake.put_secret("app/db", "old");
        fake.set_latency(Duration::from_millis(50));
        let key = Key::current(Source::SecretsManager, Arc::from("app/db"));
        let reader = {
            let (cache, key) = (cache.clone(), key.clone());
            tokio::spawn(async move { cache.get(&key, Freshness::Cached).await })
        };
        // Wait until the read's fetch is registered, then the write lands.
        while cache.inner.flights.in_flight(|_| true).is_empty() {
            tokio::task::yield_now().await;
        }
        cache
            .invalidate_after_write(&Scope::HOME, Source::SecretsManager, "app/db", Duration::from_secs(5))
            .await;
        assert!(reader.is_finished() || cache.inner.flights.in_flight(|_| true).is_empty());
        assert_eq!(cache.len(), 0, "what the fetch in flight stored was dropped again");
        reader.await.expect("join").expect("the reader still got its answer");
    }

    #[tokio::test]
    async fn listings_outside_the_allowlist_leave_refused_items_out() {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_param("/app/a", "String", "v");
        fake.put_param("/app/secret", "String", "v");
        let mut settings = CacheSettings::for_tests(100, Duration::from_secs(60));
        settings.allow = Some(crate::allow::AllowList::parse("ssm:/app/a").expect("allow"));
        let cache = Cache::new(settings, fake);
        let names = cache.list_path(&Scope::HOME, "/app", true).await.expect("listing");
        let names: Vec<&str> = names.iter().map(|n| &**n).collect();
        assert_eq!(names, ["/app/a"]);
        assert_eq!(cache.len(), 1, "the refused value was not stored");
    }
}
