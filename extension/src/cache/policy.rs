//! What a lookup does with what the cache holds: answer fresh entries from memory,
//! fetch missing or expired ones (single-flight), rate-limit forced refreshes, serve
//! stale values while upstream fails transiently, and pass definitive answers on.

use std::sync::Arc;

use tokio::time::Instant;

use super::batch::fetch_all;
use super::entry::Entry;
use super::flight;
use super::flight::{wait, Begun};
use super::keep::FetchFor;
use super::key::{Decrypt, Key};
use super::refresh;
use super::{Answer, Cache, Freshness, Outcome};
use crate::backend::{ErrorKind, UpstreamError, Value};
use crate::model::Source;

impl Answer {
    fn from_entry(entry: &Entry, outcome: Outcome, now: Instant) -> Answer {
        Answer {
            value: entry.value.clone(),
            outcome,
            age: now.saturating_duration_since(entry.fetched_at),
        }
    }

    fn fetched(value: Arc<Value>, outcome: Outcome) -> Answer {
        Answer {
            value,
            outcome,
            age: std::time::Duration::ZERO,
        }
    }
}

/// Answers one key.
pub(super) async fn get(cache: &Cache, requested: &Key, freshness: Freshness) -> Result<Answer, UpstreamError> {
    let now = Instant::now();
    let inner = &cache.inner;
    let key = inner.store.canonical(requested);
    if !inner.settings.caches(key.source) {
        let rx = flight::fly(
            cache,
            key.into_owned(),
            requested.id.clone(),
            FetchFor::request(false, false),
        );
        return Ok(Answer::fetched(wait(rx).await?, Outcome::Bypass));
    }
    let Some((entry, decrypt)) = inner.store.find(&key) else {
        if let Some(error) = negative(cache, &key, freshness, now) {
            return Err(error);
        }
        return miss(cache, key.into_owned(), requested).await;
    };
    entry.touch(inner.store.now_ms(now));
    if freshness == Freshness::Latest {
        return forced(cache, stored_key(key.into_owned(), decrypt), entry, now).await;
    }
    if now < entry.fresh_until {
        return Ok(Answer::from_entry(&entry, Outcome::Hit, now));
    }
    if entry.backing_off(now) {
        return stale_or_error(cache, &entry, now);
    }
    let key = stored_key(key.into_owned(), decrypt);
    // Expired, and kept warm by refresh-ahead (it is due, like any others that
    // expired with it): refresh them all in one batch and join it.
    refresh::start_due(cache, now);
    if let Some(rx) = inner.flights.get(&key) {
        let result = wait(rx).await;
        if result.is_ok() {
            // Counted as a use, as a fetch made for this request would be.
            if let Some((fresh, _)) = inner.store.find(&key) {
                fresh.touch(inner.store.now_ms(Instant::now()));
            }
        }
        return settle(cache, result, Outcome::Miss, Some(&entry), now);
    }
    revalidate(cache, key, entry, now, false).await
}

/// A definitive failure remembered for `key` within the negative TTL, unless the
/// request forces a refresh.
fn negative(cache: &Cache, key: &Key, freshness: Freshness, now: Instant) -> Option<UpstreamError> {
    if freshness == Freshness::Latest {
        return None;
    }
    let error = cache.inner.store.negative(key, now)?;
    cache.inner.stats.negative_hit();
    Some(error)
}

/// The key an entry found by [`super::store::Store::find`] is stored under.
fn stored_key(key: Key, decrypt: Decrypt) -> Key {
    if key.decrypt == decrypt {
        key
    } else {
        key.with_decrypt(decrypt)
    }
}

async fn miss(cache: &Cache, key: Key, requested: &Key) -> Result<Answer, UpstreamError> {
    let inner = &cache.inner;
    if key.source == Source::Ssm {
        // A path prefetch covering this name may be about to store it.
        inner.flights.wait_for_paths(&requested.id).await;
        if let Some((entry, _)) = inner.store.find(&key) {
            let now = Instant::now();
            entry.touch(inner.store.now_ms(now));
            return Ok(Answer::from_entry(&entry, Outcome::Hit, now));
        }
        // A decrypted fetch in flight answers a plain request too, unless the
        // parameter turns out to be a SecureString.
        if key.decrypt == Decrypt::No {
            if let Some(rx) = inner.flights.get(&key.with_decrypt(Decrypt::Yes)) {
                if let Ok(value) = wait(rx).await {
                    if !value.secure {
                        return Ok(Answer::fetched(value, Outcome::Miss));
                    }
                }
            }
        }
    }
    let rx = match begin_missing(
        cache,
        requested,
        key,
        requested.id.clone(),
        FetchFor::request(false, true),
    ) {
        Ok(Begun::Joined(rx)) => rx,
        Ok(Begun::New(handle)) => flight::launch(cache, handle),
        Err(entry) => {
            let now = Instant::now();
            entry.touch(inner.store.now_ms(now));
            return Ok(Answer::from_entry(&entry, Outcome::Hit, now));
        }
    };
    Ok(Answer::fetched(wait(rx).await?, Outcome::Miss))
}

/// `begin` for a key the store was found not to hold. A fetch of it may have
/// finished between that look and this registration (it stores, then unregisters),
/// so once the flight is ours the store is asked again: a value found there ends
/// the flight (`Err`, the entry) and no second call is made.
pub(super) fn begin_missing(
    cache: &Cache,
    requested: &Key,
    key: Key,
    fetch_id: Arc<str>,
    how: FetchFor,
) -> Result<Begun, Arc<Entry>> {
    let begun = flight::begin(cache, key, fetch_id, how);
    let Begun::New(handle) = begun else {
        return Ok(begun);
    };
    let store = &cache.inner.store;
    match store.find(&store.canonical(requested)) {
        Some((entry, _)) if Instant::now() < entry.fresh_until => {
            handle.resolve(entry.value.clone());
            Err(entry)
        }
        _ => Ok(Begun::New(handle)),
    }
}

/// Whether a `refreshNow` for `entry` falls inside the rate-limit interval of the
/// last one that went upstream.
fn rate_limited(cache: &Cache, entry: &Entry, now: Instant) -> bool {
    let interval = cache.inner.settings.refresh_now_interval;
    entry.forced_at.is_some_and(|t| now < t + interval)
}

/// `refreshNow`: at most one forced upstream call per key per interval; within
/// it, join the forced fetch in flight or serve what it stored.
async fn forced(cache: &Cache, key: Key, entry: Arc<Entry>, now: Instant) -> Result<Answer, UpstreamError> {
    if rate_limited(cache, &entry, now) && now < entry.fresh_until {
        if let Some(rx) = cache.inner.flights.get(&key) {
            return match wait(rx).await {
                Ok(value) => Ok(Answer::fetched(value, Outcome::Miss)),
                Err(_) => Ok(Answer::from_entry(&entry, Outcome::Stale, now)),
            };
        }
        return Ok(Answer::from_entry(&entry, Outcome::Hit, now));
    }
    revalidate(cache, key, entry, now, true).await
}

async fn revalidate(
    cache: &Cache,
    key: Key,
    entry: Arc<Entry>,
    now: Instant,
    forced: bool,
) -> Result<Answer, UpstreamError> {
    let servable = entry.within_stale_limit(now, cache.inner.settings.max_stale);
    let how = FetchFor::request(forced, true).holding(servable);
    let rx = flight::fly(cache, key, entry.fetch_id.clone(), how);
    let result = wait(rx).await;
    settle(cache, result, Outcome::Miss, Some(&entry), now)
}

/// A fetch's result as an answer: a transient failure serves `held` (stale) while
/// it is within `MAX_STALE`.
fn settle(
    cache: &Cache,
    result: Result<Arc<Value>, UpstreamError>,
    outcome: Outcome,
    held: Option<&Entry>,
    now: Instant,
) -> Result<Answer, UpstreamError> {
    let max_stale = cache.inner.settings.max_stale;
    match (result, held) {
        (Ok(value), _) => Ok(Answer::fetched(value, outcome)),
        (Err(e), Some(entry)) if e.kind.is_transient() && entry.within_stale_limit(now, max_stale) => {
            Ok(Answer::from_entry(entry, Outcome::Stale, now))
        }
        (Err(e), _) => Err(e),
    }
}

fn stale_or_error(cache: &Cache, entry: &Entry, now: Instant) -> Result<Answer, UpstreamError> {
    if entry.within_stale_limit(now, cache.inner.settings.max_stale) {
        return Ok(Answer::from_entry(entry, Outcome::Stale, now));
    }
    Err(entry
        .last_error
        .clone()
        .unwrap_or_else(|| UpstreamError::new(ErrorKind::Unavailable, "upstream is failing")))
}

/// One key of [`get_many`] that needs upstream: where its answer will come from.
struct Pending {
    index: usize,
    rx: super::flight::FlightRx,
    held: Option<Arc<Entry>>,
    outcome: Outcome,
}

/// Answers many keys: each as [`get`] would, except that every key needing a fetch
/// joins one batched fetch (BatchGetSecretValue, GetParameters) instead of a call of
/// its own. A `refreshNow` inside its rate-limit interval is answered from memory.
pub(super) async fn get_many(cache: &Cache, keys: &[Key], freshness: Freshness) -> Vec<Result<Answer, UpstreamError>> {
    let inner = &cache.inner;
    let now = Instant::now();
    let now_ms = inner.store.now_ms(now);
    let mut answers: Vec<Option<Result<Answer, UpstreamError>>> = keys.iter().map(|_| None).collect();
    let mut pending = Vec::new();
    let mut handles = Vec::new();
    for (index, requested) in keys.iter().enumerate() {
        let key = inner.store.canonical(requested).into_owned();
        let caches = inner.settings.caches(key.source);
        let mut found = caches.then(|| inner.store.find(&key)).flatten();
        if caches && found.is_none() && key.source == Source::Ssm {
            inner.flights.wait_for_paths(&requested.id).await;
            found = inner.store.find(&key);
        }
        let (flight_key, fetch_id, held, forced) = match found {
            Some((entry, decrypt)) => {
                entry.touch(now_ms);
                let forced = freshness == Freshness::Latest && !rate_limited(cache, &entry, now);
                if !forced && now < entry.fresh_until {
                    answers[index] = Some(Ok(Answer::from_entry(&entry, Outcome::Hit, now)));
                    continue;
                }
                if !forced && entry.backing_off(now) {
                    answers[index] = Some(stale_or_error(cache, &entry, now));
                    continue;
                }
                (stored_key(key, decrypt), entry.fetch_id.clone(), Some(entry), forced)
            }
            None => {
                if let Some(error) = caches.then(|| negative(cache, &key, freshness, now)).flatten() {
                    answers[index] = Some(Err(error));
                    continue;
                }
                (key, requested.id.clone(), None, false)
            }
        };
        let outcome = if caches { Outcome::Miss } else { Outcome::Bypass };
        let servable = held
            .as_ref()
            .is_some_and(|e| e.within_stale_limit(now, inner.settings.max_stale));
        let how = FetchFor::request(forced, caches).holding(servable);
        let begun = if caches && held.is_none() {
            begin_missing(cache, requested, flight_key, fetch_id, how)
        } else {
            Ok(flight::begin(cache, flight_key, fetch_id, how))
        };
        let rx = match begun {
            Ok(Begun::Joined(rx)) => rx,
            Ok(Begun::New(handle)) => {
                let rx = handle.subscribe();
                handles.push(handle);
                rx
            }
            Err(entry) => {
                entry.touch(now_ms);
                answers[index] = Some(Ok(Answer::from_entry(&entry, Outcome::Hit, Instant::now())));
                continue;
            }
        };
        pending.push(Pending {
            index,
            rx,
            held,
            outcome,
        });
    }
    if !handles.is_empty() {
        // In a task the cache owns: callers hanging up cancel nothing others wait on.
        let owner = cache.clone();
        cache.spawn(async move {
            fetch_all(&owner, handles, None).await;
        });
    }
    for p in pending {
        let result = wait(p.rx).await;
        answers[p.index] = Some(settle(cache, result, p.outcome, p.held.as_deref(), now));
    }
    answers
        .into_iter()
        .map(|a| a.unwrap_or_else(|| Err(UpstreamError::aborted("not answered"))))
        .collect()
}
