//! `Cache::get_many`: one batched fetch for every key that needs upstream, answers in
//! the order asked, and each key with the same semantics as `get`.

use std::sync::atomic::Ordering::SeqCst;
use std::time::Duration;

use tokio::time::advance;

use super::*;

fn secrets(ids: &[&str]) -> Vec<Key> {
    ids.iter()
        .map(|id| request(Source::SecretsManager, &format!("secretId={id}")).0)
        .collect()
}

fn outcomes(answers: &[Result<Answer, UpstreamError>]) -> Vec<Result<Outcome, ErrorKind>> {
    answers
        .iter()
        .map(|a| a.as_ref().map(|a| a.outcome).map_err(|e| e.kind))
        .collect()
}

#[tokio::test(start_paused = true)]
async fn misses_share_one_batch_and_hits_cost_nothing() {
    let (cache, fake) = setup(settings());
    for id in ["a", "b", "c"] {
        fake.put_secret(id, id);
    }
    sm(&cache, "secretId=a").await.expect("cached");
    let calls = fake.calls();
    let answers = cache
        .get_many(&secrets(&["c", "a", "gone", "b"]), Freshness::Cached)
        .await;
    assert_eq!(
        outcomes(&answers),
        [
            Ok(Outcome::Miss),
            Ok(Outcome::Hit),
            Err(ErrorKind::NotFound),
            Ok(Outcome::Miss)
        ]
    );
    let names: Vec<&str> = answers
        .iter()
        .filter_map(|a| a.as_ref().ok())
        .map(Answer::name)
        .collect();
    assert_eq!(names, ["c", "a", "b"], "answers come in the order asked");
    assert_eq!(fake.calls(), calls + 1, "one BatchGetSecretValue for the three misses");
    assert_eq!(fake.batch_calls.load(SeqCst), 1);
    // Stored: a second round is all hits (the missing one is asked again).
    let again = cache.get_many(&secrets(&["c", "b"]), Freshness::Cached).await;
    assert_eq!(outcomes(&again), [Ok(Outcome::Hit), Ok(Outcome::Hit)]);
    assert_eq!(fake.calls(), calls + 1);
}

#[tokio::test(start_paused = true)]
async fn a_key_already_in_flight_is_joined_not_fetched_again() {
    let (cache, fake) = setup(settings());
    fake.put_secret("b", "b");
    fake.set_latency(Duration::from_millis(100));
    let single = {
        let cache = cache.clone();
        tokio::spawn(async move { sm(&cache, "secretId=app/db").await })
    };
    tokio::task::yield_now().await;
    let answers = cache.get_many(&secrets(&["app/db", "b"]), Freshness::Cached).await;
    assert_eq!(outcomes(&answers), [Ok(Outcome::Miss), Ok(Outcome::Miss)]);
    single.await.expect("task").expect("value");
    assert_eq!(fake.calls(), 2, "the single fetch, and one batch for the other key");
}

#[tokio::test(start_paused = true)]
async fn held_values_are_served_stale_when_the_batch_fails_transiently() {
    let (cache, fake) = setup(settings());
    fake.put_secret("b", "b");
    cache.get_many(&secrets(&["app/db", "b"]), Freshness::Cached).await;
    advance(TTL).await;
    fake.fail_all(Some(ErrorKind::Throttled));
    let answers = cache
        .get_many(&secrets(&["app/db", "b", "never-seen"]), Freshness::Cached)
        .await;
    assert_eq!(
        outcomes(&answers),
        [Ok(Outcome::Stale), Ok(Outcome::Stale), Err(ErrorKind::Throttled)]
    );
    assert_eq!(raw(answers[0].as_ref().expect("stale")), "pw1");
}

#[tokio::test(start_paused = true)]
async fn latest_goes_upstream_once_per_interval() {
    let (cache, fake) = setup(settings());
    cache.get_many(&secrets(&["app/db"]), Freshness::Cached).await;
    fake.put_secret("app/db", "pw2");
    let forced = cache.get_many(&secrets(&["app/db"]), Freshness::Latest).await;
    assert_eq!(raw(forced[0].as_ref().expect("forced")), "pw2");
    let calls = fake.calls();
    let limited = cache.get_many(&secrets(&["app/db"]), Freshness::Latest).await;
    assert_eq!(outcomes(&limited), [Ok(Outcome::Hit)], "inside the rate-limit interval");
    assert_eq!(fake.calls(), calls);
}

#[tokio::test(start_paused = true)]
async fn with_caching_off_every_key_is_fetched_and_nothing_kept() {
    let mut s = settings();
    s.secrets_manager_ttl = Duration::ZERO;
    let (cache, fake) = setup(s);
    fake.put_secret("b", "b");
    for _ in 0..2 {
        let answers = cache.get_many(&secrets(&["app/db", "b"]), Freshness::Cached).await;
        assert_eq!(outcomes(&answers), [Ok(Outcome::Bypass), Ok(Outcome::Bypass)]);
    }
    assert_eq!(fake.calls(), 2, "one batch per round");
    assert!(cache.is_empty());
}
