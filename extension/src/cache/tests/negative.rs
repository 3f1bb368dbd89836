//! Negative caching: definitive failures remembered for the negative TTL under the
//! key that asked, bypassed by `refreshNow`, never for transient failures.

use super::*;

const NEGATIVE_TTL: Duration = Duration::from_secs(5);

fn negative_settings(ttl: Duration) -> CacheSettings {
    CacheSettings {
        negative_ttl: ttl,
        ..settings()
    }
}

#[tokio::test(start_paused = true)]
async fn a_missing_id_costs_one_call_per_negative_ttl_and_appears_after_it() {
    let (cache, fake) = setup(negative_settings(NEGATIVE_TTL));
    for _ in 0..20 {
        let e = sm(&cache, "secretId=later").await.expect_err("missing");
        assert_eq!(e.kind, ErrorKind::NotFound);
    }
    assert_eq!(fake.calls(), 1);
    assert_eq!(cache.stats().negative_hits(), 19);
    fake.put_secret("later", "created");
    advance(NEGATIVE_TTL - Duration::from_millis(1)).await;
    sm(&cache, "secretId=later").await.expect_err("still remembered");
    assert_eq!(fake.calls(), 1);
    advance(Duration::from_millis(1)).await;
    let found = sm(&cache, "secretId=later")
        .await
        .expect("visible after the negative TTL");
    assert_eq!(raw(&found), "created");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_now_bypasses_a_remembered_failure() {
    let (cache, fake) = setup(negative_settings(NEGATIVE_TTL));
    sm(&cache, "secretId=later").await.expect_err("missing");
    fake.put_secret("later", "created");
    let found = sm(&cache, "secretId=later&refreshNow=true").await.expect("forced");
    assert_eq!(raw(&found), "created");
    assert_eq!(fake.calls(), 2);
    let hit = sm(&cache, "secretId=later")
        .await
        .expect("stored, the negative forgotten");
    assert_eq!(hit.outcome, Outcome::Hit);
}

#[tokio::test(start_paused = true)]
async fn access_denied_is_remembered_and_transient_failures_are_not() {
    let (cache, fake) = setup(negative_settings(NEGATIVE_TTL));
    fake.fail_next(&[ErrorKind::AccessDenied]);
    for _ in 0..3 {
        let e = ssm(&cache, "name=/app/plain").await.expect_err("denied");
        assert_eq!(e.kind, ErrorKind::AccessDenied);
    }
    assert_eq!(fake.calls(), 1);
    fake.fail_next(&[ErrorKind::Throttled]);
    sm(&cache, "secretId=app/db").await.expect_err("throttled");
    sm(&cache, "secretId=app/db")
        .await
        .expect("a throttle is not remembered");
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn a_zero_negative_ttl_remembers_nothing() {
    let (cache, fake) = setup(negative_settings(Duration::ZERO));
    for _ in 0..3 {
        sm(&cache, "secretId=gone").await.expect_err("missing");
    }
    assert_eq!(fake.calls(), 3);
    assert_eq!(cache.stats().negative_hits(), 0);
}

#[tokio::test(start_paused = true)]
async fn get_many_answers_remembered_failures_without_calls() {
    let (cache, fake) = setup(negative_settings(NEGATIVE_TTL));
    sm(&cache, "secretId=gone").await.expect_err("missing");
    let keys = [
        request(Source::SecretsManager, "secretId=gone").0,
        request(Source::SecretsManager, "secretId=app/db").0,
    ];
    let answers = cache.get_many(&keys, Freshness::Cached).await;
    assert_eq!(answers[0].as_ref().expect_err("remembered").kind, ErrorKind::NotFound);
    assert!(answers[1].is_ok());
    assert_eq!(
        fake.calls(),
        2,
        "the first miss and app/db; nothing for the remembered id"
    );
}
