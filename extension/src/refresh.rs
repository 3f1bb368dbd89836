//! Refresh-ahead: re-fetch entries past their refresh point before they expire, so
//! no request waits on upstream.
//!
//! In Lambda this runs on every INVOKE and finishes before the next `event/next`
//! (the environment is frozen between invokes, so work left running would stall).
//! Standalone, a timer runs it. Refreshed keys are batched like the prefetch.

use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, warn};

use crate::cache::{Begun, Cache, FetchFor};
use crate::fetch::fetch_all;
use crate::metrics::Metrics;

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Refreshed {
    pub due: usize,
    pub ok: usize,
    pub failed: usize,
    /// The budget ran out; the rest was abandoned and stays due.
    pub abandoned: bool,
}

/// Refreshes what is due, within `budget`.
pub async fn refresh_due(cache: &Cache, metrics: &Metrics, budget: Duration) -> Refreshed {
    let started = Instant::now();
    let due = cache.due_for_refresh(started);
    if due.is_empty() {
        return Refreshed::default();
    }
    let handles: Vec<_> = due
        .into_iter()
        .filter_map(|(key, id)| match cache.begin(key, id, FetchFor::REFRESH) {
            Begun::New(h) => Some(h),
            Begun::Joined(_) => None,
        })
        .collect();
    let mut outcome = Refreshed {
        due: handles.len(),
        ..Refreshed::default()
    };
    let tally = fetch_all(cache, handles, started + budget).await;
    outcome.ok = tally.ok;
    outcome.failed = tally.failed.len();
    outcome.abandoned = tally.abandoned;
    if tally.abandoned {
        warn!(
            budget_ms = budget.as_millis() as u64,
            "refresh-ahead ran out of time; the rest stays due"
        );
    }
    for _ in 0..outcome.ok {
        metrics.refreshed(true);
    }
    for _ in 0..outcome.failed {
        metrics.refreshed(false);
    }
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
    use crate::cache::CacheSettings;
    use crate::metrics::Outcome;
    use crate::query::parse_secrets_manager;
    use std::sync::Arc;
    use tokio::time::advance;

    const TTL: Duration = Duration::from_secs(10);

    fn setup() -> (Cache, Arc<FakeUpstream>, Arc<Metrics>) {
        let fake = Arc::new(FakeUpstream::new());
        for i in 0..3 {
            fake.put_secret(&format!("s{i}"), "v1");
        }
        let settings = CacheSettings {
            capacity: 100,
            enabled: true,
            secrets_manager_ttl: TTL,
            ssm_ttl: TTL,
            max_stale: Duration::from_secs(60),
            refresh_ahead: 0.5,
            refresh_now_interval: Duration::from_secs(1),
        };
        let metrics = Arc::new(Metrics::default());
        (Cache::new(settings, fake.clone(), metrics.clone()), fake, metrics)
    }

    #[tokio::test(start_paused = true)]
    async fn used_entries_are_refreshed_in_one_batch_before_expiry() {
        let (cache, fake, metrics) = setup();
        for i in 0..3 {
            cache
                .get(&parse_secrets_manager(&format!("secretId=s{i}")).expect("q"))
                .await
                .expect("v");
        }
        assert_eq!(fake.calls(), 3);
        assert_eq!(
            refresh_due(&cache, &metrics, TTL).await,
            Refreshed::default(),
            "nothing due yet"
        );

        advance(TTL / 2).await;
        for i in 0..3 {
            fake.put_secret(&format!("s{i}"), "v2");
        }
        let r = refresh_due(&cache, &metrics, TTL).await;
        assert_eq!((r.due, r.ok, r.failed), (3, 3, 0));
        assert_eq!(fake.calls(), 4, "one BatchGetSecretValue for all three");

        // Past the old expiry, requests are hits on the refreshed values.
        advance(TTL / 2 + Duration::from_secs(1)).await;
        for i in 0..3 {
            let s = cache
                .get(&parse_secrets_manager(&format!("secretId=s{i}")).expect("q"))
                .await
                .expect("v");
            assert_eq!((s.outcome, &s.value.raw()[..]), (Outcome::Hit, &b"v2"[..]));
        }
        assert_eq!(fake.calls(), 4);
    }

    #[tokio::test(start_paused = true)]
    async fn unused_entries_are_left_to_expire() {
        let (cache, fake, metrics) = setup();
        cache
            .get(&parse_secrets_manager("secretId=s0").expect("q"))
            .await
            .expect("v");
        advance(TTL / 2).await;
        assert_eq!(refresh_due(&cache, &metrics, TTL).await.ok, 1);
        // Not used since that refresh: not refreshed again.
        advance(TTL / 2).await;
        assert_eq!(refresh_due(&cache, &metrics, TTL).await.due, 0);
        assert_eq!(fake.calls(), 2);
    }

    #[tokio::test(start_paused = true)]
    async fn failed_refresh_keeps_the_value_and_backs_off() {
        let (cache, fake, metrics) = setup();
        cache
            .get(&parse_secrets_manager("secretId=s0").expect("q"))
            .await
            .expect("v");
        advance(TTL / 2).await;
        fake.fail_all(Some(ErrorKind::Unavailable));
        let r = refresh_due(&cache, &metrics, TTL).await;
        assert_eq!((r.ok, r.failed), (0, 1));
        assert_eq!(refresh_due(&cache, &metrics, TTL).await.due, 0, "backing off");
        let s = cache
            .get(&parse_secrets_manager("secretId=s0").expect("q"))
            .await
            .expect("v");
        assert_eq!(s.outcome, Outcome::Hit, "still fresh: the refresh was ahead of expiry");
    }

    #[tokio::test(start_paused = true)]
    async fn the_budget_bounds_the_refresh() {
        let (cache, fake, metrics) = setup();
        cache
            .get(&parse_secrets_manager("secretId=s0").expect("q"))
            .await
            .expect("v");
        advance(TTL / 2).await;
        fake.set_latency(Duration::from_secs(30));
        let r = refresh_due(&cache, &metrics, Duration::from_millis(100)).await;
        assert!(r.abandoned);
        fake.set_latency(Duration::ZERO);
        assert_eq!(
            refresh_due(&cache, &metrics, TTL).await.ok,
            1,
            "still due after abandoning"
        );
    }
}
