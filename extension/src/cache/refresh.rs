//! Refresh-ahead: re-fetch entries past their refresh point before they expire, so
//! no request waits on upstream.
//!
//! In Lambda this runs on every INVOKE and finishes before the next `event/next`
//! (the environment is frozen between invokes, so work left running would stall),
//! including refreshes a request started. Standalone and on Managed Instances, a
//! timer runs it. Refreshed keys are batched like the prefetch. A request that finds
//! a kept-warm entry already expired (an environment idle or frozen past its TTLs:
//! provisioned concurrency's first INVOKE, say) starts the refresh of everything due
//! in one batch and joins it, rather than fetching its key alone.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use std::sync::Arc;

use super::batch::{fetch_all, Tally};
use super::flight;
use super::flight::{wait, Begun, FlightHandle, FlightRx};
use super::keep::FetchFor;
use super::{Cache, Key};

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub due: usize,
    pub ok: usize,
    pub failed: usize,
    /// The budget ran out; the rest was abandoned and stays due.
    pub abandoned: bool,
}

/// What a pass started: the new fetches, the receivers of due keys some other fetch
/// is already getting, and which of the new fetches are wanted prefetch keys (with
/// their failure counts), to want again if they fail once more.
struct Due {
    started: Vec<FlightHandle>,
    joined: Vec<FlightRx>,
    wanted: Vec<(Arc<str>, Key, u32)>,
}

/// Registers every due key, and every wanted prefetch key that is due, as a fetch in
/// flight.
fn begin_due(cache: &Cache, now: Instant) -> Due {
    let mut due = Due {
        started: Vec::new(),
        joined: Vec::new(),
        wanted: Vec::new(),
    };
    for (key, id) in cache.inner.store.due_for_refresh(now, |_| false) {
        match flight::begin(cache, key, id, FetchFor::REFRESH) {
            Begun::New(h) => due.started.push(h),
            Begun::Joined(rx) => due.joined.push(rx),
        }
    }
    for w in cache.inner.wanted.take_due(now) {
        let store = &cache.inner.store;
        if store.find(&store.canonical(&w.key)).is_some() {
            continue; // a request stored it meanwhile
        }
        if let Begun::New(h) = flight::begin(cache, w.key.clone(), w.fetch_id.clone(), FetchFor::PREFETCH) {
            due.wanted.push((w.fetch_id, w.key, w.failures));
            due.started.push(h);
        }
    }
    due
}

/// Wants again the wanted keys of a pass that failed transiently once more.
fn want_again(cache: &Cache, wanted: Vec<(Arc<str>, Key, u32)>, tally: &Tally) {
    let now = Instant::now();
    for (id, key, failures) in wanted {
        let failed = tally.failed.iter().any(|(f, e)| *f == id && e.kind.is_transient());
        if failed {
            cache.inner.wanted.want(key, id, failures.saturating_add(1), now);
        }
    }
}

/// Starts, in a task the cache owns, the refresh of everything due (the request
/// that calls this then waits for its own key's flight).
pub(super) fn start_due(cache: &Cache, now: Instant) {
    let Due { started, wanted, .. } = begin_due(cache, now);
    if started.is_empty() {
        return;
    }
    let owner = cache.clone();
    cache.spawn(async move {
        let tally = fetch_all(&owner, started, None).await;
        want_again(&owner, wanted, &tally);
        owner.inner.stats.refreshed(tally.ok as u64, tally.failed.len() as u64);
    });
}

/// Refreshes what is due, within `budget`, and waits (within it too) for due keys
/// whose refresh is already under way.
pub(super) async fn refresh_due(cache: &Cache, budget: Duration) -> Refreshed {
    let started = Instant::now();
    let deadline = started + budget;
    let Due {
        started: handles,
        joined,
        wanted,
    } = begin_due(cache, started);
    if handles.is_empty() && joined.is_empty() {
        return Refreshed::default();
    }
    let mut outcome = Refreshed {
        due: handles.len(),
        ..Refreshed::default()
    };
    let tally = fetch_all(cache, handles, Some(deadline)).await;
    want_again(cache, wanted, &tally);
    for rx in joined {
        let _ = tokio::time::timeout_at(deadline, wait(rx)).await;
    }
    outcome.ok = tally.ok;
    outcome.failed = tally.failed.len();
    outcome.abandoned = tally.abandoned;
    if tally.abandoned {
        warn!(
            budget_ms = budget.as_millis() as u64,
            "refresh-ahead ran out of time; the rest stays due"
        );
    }
    cache.inner.stats.refreshed(outcome.ok as u64, outcome.failed as u64);
    debug!(
        due = outcome.due,
        ok = outcome.ok,
        failed = outcome.failed,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "refresh-ahead"
    );
    outcome
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::backend::ErrorKind;
    use crate::cache::{CacheSettings, Freshness, Key, Outcome};
    use crate::model::{Selector, Source};
    use std::sync::Arc;
    use tokio::time::advance;

    fn secret(id: &str) -> Key {
        Key::new(Source::SecretsManager, id.into(), Selector::Current, false)
    }

    const TTL: Duration = Duration::from_secs(10);

    /// Past the latest refresh-ahead point a fetch can draw (0.5 of the TTL plus jitter).
    fn past_refresh_point() -> Duration {
        TTL.mul_f64(0.5 + crate::cache::entry::REFRESH_JITTER)
    }

    fn setup() -> (Cache, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        for i in 0..3 {
            fake.put_secret(&format!("s{i}"), "v1");
        }
        let settings = CacheSettings::for_tests(100, TTL);
        (Cache::new(settings, fake.clone()), fake)
    }

    /// Reads s0, s1 and s2 once each, so all three count as used.
    async fn use_all(cache: &Cache) {
        for i in 0..3 {
            cache
                .get(&secret(&format!("s{i}")), Freshness::Cached)
                .await
                .expect("v");
        }
    }

    #[tokio::test(start_paused = true)]
    async fn used_entries_are_refreshed_in_one_batch_before_expiry() {
        let (cache, fake) = setup();
        use_all(&cache).await;
        assert_eq!(fake.calls(), 3);
        assert_eq!(cache.refresh_due(TTL).await, Refreshed::default(), "nothing due yet");

        advance(past_refresh_point()).await;
        for i in 0..3 {
            fake.put_secret(&format!("s{i}"), "v2");
        }
        let r = cache.refresh_due(TTL).await;
        assert_eq!((r.due, r.ok, r.failed), (3, 3, 0));
        assert_eq!(fake.calls(), 4, "one BatchGetSecretValue for all three");
        assert_eq!((cache.stats().refreshes_ok(), cache.stats().refreshes_failed()), (3, 0));

        // Past the old expiry, requests are hits on the refreshed values.
        advance(TTL / 2 + Duration::from_secs(1)).await;
        for i in 0..3 {
            let s = cache
                .get(&secret(&format!("s{i}")), Freshness::Cached)
                .await
                .expect("v");
            assert_eq!((s.outcome, &s.value.raw()[..]), (Outcome::Hit, &b"v2"[..]));
        }
        assert_eq!(fake.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unused_entries_are_left_to_expire() {
        let (cache, fake) = setup();
        cache.get(&secret("s0"), Freshness::Cached).await.expect("v");
        advance(past_refresh_point()).await;
        assert_eq!(cache.refresh_due(TTL).await.ok, 1);
        // Not used since that refresh: not refreshed again.
        advance(TTL / 2).await;
        assert_eq!(cache.refresh_due(TTL).await.due, 0);
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_the_value_and_backs_off() {
        let (cache, fake) = setup();
        cache.get(&secret("s0"), Freshness::Cached).await.expect("v");
        advance(past_refresh_point()).await;
        fake.fail_all(Some(ErrorKind::Unavailable));
        let r = cache.refresh_due(TTL).await;
        assert_eq!((r.ok, r.failed), (0, 1));
        assert_eq!(cache.stats().refreshes_failed(), 1);
        assert_eq!(cache.refresh_due(TTL).await.due, 0, "backing off");
        let s = cache.get(&secret("s0"), Freshness::Cached).await.expect("v");
        assert_eq!(s.outcome, Outcome::Hit, "still fresh: the refresh was ahead of expiry");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_refresh() {
        let (cache, fake) = setup();
        cache.get(&secret("s0"), Freshness::Cached).await.expect("v");
        advance(past_refresh_point()).await;
        fake.set_latency(Duration::from_secs(30));
        let r = cache.refresh_due(Duration::from_millis(100)).await;
        assert!(r.abandoned);
        fake.set_latency(Duration::ZERO);
        assert_eq!(cache.refresh_due(TTL).await.ok, 1, "still due after abandoning");
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_after_a_long_freeze_refreshes_every_due_key_in_one_batch() {
        let (cache, fake) = setup();
        use_all(&cache).await;
        // Frozen far past every TTL (provisioned concurrency before its first invoke).
        advance(TTL * 3).await;
        for i in 0..3 {
            fake.put_secret(&format!("s{i}"), "v2");
        }
        let calls = fake.calls();
        let first = cache.get(&secret("s1"), Freshness::Cached).await.expect("v");
        assert_eq!((first.outcome, &first.value.raw()[..]), (Outcome::Miss, &b"v2"[..]));
        assert_eq!(fake.calls(), calls + 1, "one BatchGetSecretValue for the three keys");
        for i in [0, 2] {
            let s = cache
                .get(&secret(&format!("s{i}")), Freshness::Cached)
                .await
                .expect("v");
            assert_eq!((s.outcome, &s.value.raw()[..]), (Outcome::Hit, &b"v2"[..]), "s{i}");
        }
        assert_eq!(fake.calls(), calls + 1);
        // The INVOKE's own pass finds nothing left to do.
        assert_eq!(cache.refresh_due(TTL).await, Refreshed::default());
    }
}
