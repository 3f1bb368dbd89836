//! How many attempts a fetch may make: the SDK's retries when nothing can be served
//! meanwhile, one attempt when a value is in hand; and the prefetch's own retries of
//! keys that failed transiently.

use std::sync::atomic::Ordering::SeqCst;

use super::*;
use crate::model::parse_ref_list;

#[tokio::test(start_paused = true)]
async fn a_cold_miss_keeps_the_sdk_retries_and_a_held_value_is_refetched_once() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    assert_eq!(
        fake.single_attempt_calls.load(SeqCst),
        0,
        "nothing to serve: retries allowed"
    );

    advance(TTL).await;
    fake.fail_next(&[ErrorKind::Throttled]);
    let stale = sm(&cache, "secretId=app/db").await.expect("served stale");
    assert_eq!(stale.outcome, Outcome::Stale);
    assert_eq!(fake.calls(), 2);
    assert_eq!(
        fake.single_attempt_calls.load(SeqCst),
        1,
        "an expired value within MAX_STALE is in hand: one attempt"
    );
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_makes_one_attempt_per_key_per_backoff_step() {
    let (cache, fake) = setup(settings());
    let refs = parse_ref_list("secretsmanager:app/db").expect("refs");
    cache
        .prefetch(cache.plan_prefetch(&refs), Instant::now() + Duration::from_secs(5))
        .await;
    let before = fake.calls();
    fake.fail_all(Some(ErrorKind::Throttled));
    advance(TTL.mul_f64(0.5 + super::super::entry::REFRESH_JITTER) + Duration::from_millis(1)).await;
    let pass = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!((pass.due, pass.failed), (1, 1));
    assert_eq!(fake.calls() - before, 1);
    assert_eq!(fake.single_attempt_calls.load(SeqCst), 1);
    // Inside the backoff step nothing is due again.
    let again = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!(again.due, 0, "{again:?}");
    assert_eq!(fake.calls() - before, 1);
    advance(BACKOFF_BASE).await;
    let retry = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!(retry.due, 1);
    assert_eq!(fake.calls() - before, 2, "one more attempt after the step");
}

#[tokio::test(start_paused = true)]
async fn the_prefetch_retries_keys_that_failed_transiently_within_its_deadline() {
    let (cache, fake) = setup(settings());
    fake.put_secret("app/other", "o");
    fake.fail_next(&[ErrorKind::Throttled]);
    let refs = parse_ref_list("secretsmanager:app/db secretsmanager:app/other secretsmanager:gone").expect("refs");
    let report = cache
        .prefetch(cache.plan_prefetch(&refs), Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(report.stored, 2, "{report:?}");
    let names: Vec<String> = report.failures.iter().map(|(r, _)| r.to_string()).collect();
    assert_eq!(names, ["secretsmanager:gone"], "a definitive failure is not retried");
    assert_eq!(
        fake.calls(),
        2,
        "the throttled batch, then one retry of the transient keys"
    );
    let hit = sm(&cache, "secretId=app/other").await.expect("value");
    assert_eq!(hit.outcome, Outcome::Hit);
}

#[tokio::test(start_paused = true)]
async fn the_prefetch_stops_retrying_at_its_deadline() {
    let (cache, fake) = setup(settings());
    fake.fail_all(Some(ErrorKind::Throttled));
    let refs = parse_ref_list("secretsmanager:app/db").expect("refs");
    let started = Instant::now();
    let report = cache
        .prefetch(cache.plan_prefetch(&refs), started + Duration::from_secs(3))
        .await;
    assert_eq!(report.failures.len(), 1);
    assert_eq!(report.failures[0].1.kind, ErrorKind::Throttled);
    assert!(Instant::now() <= started + Duration::from_secs(3));
    let calls = fake.calls();
    assert!(
        (2..=4).contains(&calls),
        "retries spaced by a growing backoff: {calls} calls in 3 s"
    );
}

#[tokio::test(start_paused = true)]
async fn keys_that_failed_in_one_batch_retry_in_one_batch() {
    let (cache, fake) = setup(settings());
    for i in 0..5 {
        fake.put_secret(&format!("k{i}"), "v");
    }
    let refs =
        parse_ref_list("secretsmanager:k0 secretsmanager:k1 secretsmanager:k2 secretsmanager:k3 secretsmanager:k4")
            .expect("refs");
    cache
        .prefetch(cache.plan_prefetch(&refs), Instant::now() + Duration::from_secs(5))
        .await;
    assert_eq!(fake.calls(), 1, "one batch");
    fake.fail_next(&[ErrorKind::Throttled]);
    advance(TTL.mul_f64(0.5 + super::super::entry::REFRESH_JITTER) + Duration::from_millis(1)).await;
    let pass = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!((pass.due, pass.failed), (5, 5));
    assert_eq!(fake.calls(), 2, "one throttled batch");
    // At the earliest retry point every key is due: they share one draw.
    let at = cache.next_refresh_at().expect("a retry is planned");
    tokio::time::sleep_until(at).await;
    let retry = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!((retry.due, retry.ok), (5, 5), "all due again at once");
    assert_eq!(fake.calls(), 3, "retried as one batch, not five calls");
}

#[tokio::test(start_paused = true)]
async fn keys_missing_at_the_deadline_are_fetched_by_refresh_ahead_later() {
    let (cache, fake) = setup(settings());
    fake.fail_all(Some(ErrorKind::Throttled));
    let refs = parse_ref_list("secretsmanager:app/db secretsmanager:gone").expect("refs");
    let report = cache
        .prefetch(cache.plan_prefetch(&refs), Instant::now() + Duration::from_secs(2))
        .await;
    assert_eq!(report.failures.len(), 2);
    assert_eq!(cache.wanted(), 2, "both failed transiently: wanted");
    fake.fail_all(None);
    let at = cache.next_refresh_at().expect("a wanted key is planned");
    tokio::time::sleep_until(at).await;
    let pass = cache.refresh_due(Duration::from_secs(5)).await;
    assert_eq!((pass.due, pass.ok, pass.failed), (2, 1, 1), "{pass:?}");
    assert_eq!(cache.wanted(), 0, "stored, or definitively missing: no longer wanted");
    let calls = fake.calls();
    let hit = sm(&cache, "secretId=app/db").await.expect("value");
    assert_eq!(hit.outcome, Outcome::Hit);
    assert_eq!(fake.calls(), calls);
    // Prefetched (pinned): kept warm without any request.
    advance(TTL).await;
    assert_eq!(cache.refresh_due(Duration::from_secs(5)).await.due, 1);
}
