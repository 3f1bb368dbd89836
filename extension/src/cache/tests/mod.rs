//! Cache behaviour against the in-memory upstream, on tokio's paused clock: TTLs,
//! single-flight, stale-if-error with backoff, eviction, aliases, forced refresh,
//! shutdown and wipe; `many` covers `get_many`, `budget` the byte budget.

mod attempts;
mod budget;
mod many;
mod negative;

use std::sync::Arc;
use std::time::Duration;

use tokio::time::{advance, Instant};

use super::entry::BACKOFF_BASE;
use super::*;
use crate::backend::fake::FakeUpstream;
use crate::backend::ErrorKind;
use crate::model::{Selector, AWSCURRENT};

const TTL: Duration = Duration::from_secs(10);

fn settings() -> CacheSettings {
    CacheSettings::for_tests(100, TTL)
}

fn setup(settings: CacheSettings) -> (Cache, Arc<FakeUpstream>) {
    let fake = Arc::new(FakeUpstream::new());
    fake.put_secret("app/db", "pw1");
    fake.put_param("/app/key", "SecureString", "k1");
    fake.put_param("/app/plain", "String", "p1");
    (Cache::new(settings, fake.clone()), fake)
}

/// The key and freshness a request with this query string asks for (the subset of
/// the extension API's parameters these tests use; the real parser lives with the
/// server and is tested there).
fn request(source: Source, query: &str) -> (Key, Freshness) {
    let (mut id, mut selector, mut decrypt, mut freshness) = (None, Selector::Current, false, Freshness::Cached);
    for (name, value) in form_urlencoded::parse(query.as_bytes()) {
        match &*name {
            "secretId" | "name" => id = Some(value.into_owned()),
            "versionStage" if value != AWSCURRENT => selector = Selector::VersionStage(value.into_owned()),
            "versionStage" => {}
            "withDecryption" => decrypt = value == "true",
            "refreshNow" => freshness = Freshness::Latest,
            other => panic!("unexpected parameter {other}"),
        }
    }
    let id = id.expect("an id");
    (Key::new(source, id.as_str().into(), selector, decrypt), freshness)
}

async fn sm(cache: &Cache, query: &str) -> Result<Answer, UpstreamError> {
    let (key, freshness) = request(Source::SecretsManager, query);
    cache.get(&key, freshness).await
}

async fn ssm(cache: &Cache, query: &str) -> Result<Answer, UpstreamError> {
    let (key, freshness) = request(Source::Ssm, query);
    cache.get(&key, freshness).await
}

fn raw(s: &Answer) -> String {
    String::from_utf8(s.value.raw().to_vec()).expect("utf8")
}

#[tokio::test(start_paused = true)]
async fn miss_then_hit_then_expiry() {
    let (cache, fake) = setup(settings());
    let first = sm(&cache, "secretId=app/db").await.expect("fetched");
    assert_eq!((first.outcome, raw(&first)), (Outcome::Miss, "pw1".into()));
    let second = sm(&cache, "secretId=app/db").await.expect("cached");
    assert_eq!(second.outcome, Outcome::Hit);
    assert_eq!(fake.calls(), 1);

    advance(TTL - Duration::from_millis(1)).await;
    assert_eq!(sm(&cache, "secretId=app/db").await.expect("hit").outcome, Outcome::Hit);
    advance(Duration::from_millis(1)).await;
    fake.put_secret("app/db", "pw2");
    let after = sm(&cache, "secretId=app/db").await.expect("refetched");
    assert_eq!((after.outcome, raw(&after)), (Outcome::Miss, "pw2".into()));
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn concurrent_misses_make_one_upstream_call() {
    let (cache, fake) = setup(settings());
    fake.set_latency(Duration::from_millis(200));
    let lookups: Vec<_> = (0..50)
        .map(|_| {
            let cache = cache.clone();
            tokio::spawn(async move { sm(&cache, "secretId=app/db").await })
        })
        .collect();
    for task in lookups {
        let served = task.await.expect("task").expect("value");
        assert_eq!(raw(&served), "pw1");
    }
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn a_caller_hanging_up_does_not_cancel_the_shared_fetch() {
    let (cache, fake) = setup(settings());
    fake.set_latency(Duration::from_millis(100));
    let leader = {
        let cache = cache.clone();
        tokio::spawn(async move { sm(&cache, "secretId=app/db").await })
    };
    tokio::task::yield_now().await;
    let follower = {
        let cache = cache.clone();
        tokio::spawn(async move { sm(&cache, "secretId=app/db").await })
    };
    tokio::task::yield_now().await;
    leader.abort();
    let served = follower.await.expect("task").expect("value");
    assert_eq!(raw(&served), "pw1");
    assert_eq!(fake.calls(), 1);
}

#[tokio::test(start_paused = true)]
async fn transient_failure_serves_stale_and_backs_off() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    advance(TTL).await;
    fake.fail_all(Some(ErrorKind::Throttled));
    let stale = sm(&cache, "secretId=app/db").await.expect("stale value");
    assert_eq!((stale.outcome, raw(&stale)), (Outcome::Stale, "pw1".into()));
    assert_eq!(stale.age, TTL);
    assert_eq!(fake.calls(), 2);

    // While backing off, requests are answered without calling upstream.
    for _ in 0..20 {
        assert_eq!(
            sm(&cache, "secretId=app/db").await.expect("stale").outcome,
            Outcome::Stale
        );
    }
    assert_eq!(fake.calls(), 2, "no calls during backoff");

    // After the backoff (at most BACKOFF_BASE for the first failure) one more try.
    advance(BACKOFF_BASE).await;
    sm(&cache, "secretId=app/db").await.expect("stale");
    assert_eq!(fake.calls(), 3);

    // Recovery: the next attempt after backoff picks up the new value.
    fake.fail_all(None);
    fake.put_secret("app/db", "pw2");
    advance(BACKOFF_BASE * 2).await;
    let fresh = sm(&cache, "secretId=app/db").await.expect("fresh");
    assert_eq!((fresh.outcome, raw(&fresh)), (Outcome::Miss, "pw2".into()));
}

#[tokio::test(start_paused = true)]
async fn stale_values_stop_after_max_stale() {
    let mut s = settings();
    s.max_stale = Duration::from_secs(5);
    let (cache, fake) = setup(s);
    sm(&cache, "secretId=app/db").await.expect("fetched");
    fake.fail_all(Some(ErrorKind::Unavailable));
    advance(TTL + Duration::from_secs(4)).await;
    assert_eq!(
        sm(&cache, "secretId=app/db").await.expect("stale").outcome,
        Outcome::Stale
    );
    advance(Duration::from_secs(2)).await;
    let err = sm(&cache, "secretId=app/db").await.expect_err("too stale");
    assert_eq!(err.kind, ErrorKind::Unavailable);
}

#[tokio::test(start_paused = true)]
async fn definitive_errors_are_not_masked() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    assert_eq!(cache.len(), 1);
    fake.delete_secret("app/db");
    advance(TTL).await;
    let err = sm(&cache, "secretId=app/db").await.expect_err("deleted");
    assert_eq!(err.kind, ErrorKind::NotFound);
    assert_eq!(cache.len(), 0, "the entry is dropped");
    assert_eq!(cache.stats().upstream_errors(ErrorKind::NotFound), 1);
}

#[tokio::test(start_paused = true)]
async fn failures_without_a_cached_value_are_returned() {
    let (cache, fake) = setup(settings());
    fake.fail_next(&[ErrorKind::Timeout]);
    let err = sm(&cache, "secretId=app/db")
        .await
        .expect_err("no value to fall back on");
    assert_eq!(err.kind, ErrorKind::Timeout);
    // Nothing was cached by the failure; the next request tries again.
    assert_eq!(raw(&sm(&cache, "secretId=app/db").await.expect("ok")), "pw1");
}

#[tokio::test(start_paused = true)]
async fn name_and_arn_share_an_entry() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("by name");
    let arn = FakeUpstream::arn_of("app/db");
    let by_arn = sm(&cache, &format!("secretId={arn}")).await.expect("by arn");
    assert_eq!(by_arn.outcome, Outcome::Hit);
    assert_eq!(fake.calls(), 1);
    assert_eq!(cache.len(), 1);
}

/// A secret read by another region's (or account's) ARN has the same name as a home
/// secret: the name must keep meaning the home one, before and after.
#[tokio::test(start_paused = true)]
async fn a_name_never_leads_to_a_value_fetched_by_another_regions_arn() {
    let (cache, fake) = setup(settings());
    let eu_arn = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:app/db-EuWest";
    fake.put_secret_elsewhere("app/db", eu_arn, "pw-eu");
    let eu = sm(&cache, &format!("secretId={eu_arn}")).await.expect("by eu ARN");
    assert_eq!(raw(&eu), "pw-eu");
    let home = sm(&cache, "secretId=app/db").await.expect("by name");
    assert_eq!((home.outcome, raw(&home)), (Outcome::Miss, "pw1".into()));
    // Each is cached under its own ARN, and each id keeps finding its own.
    let eu = sm(&cache, &format!("secretId={eu_arn}")).await.expect("again");
    assert_eq!((eu.outcome, raw(&eu)), (Outcome::Hit, "pw-eu".into()));
    let home = sm(&cache, "secretId=app/db").await.expect("again");
    assert_eq!((home.outcome, raw(&home)), (Outcome::Hit, "pw1".into()));
    let by_home_arn = sm(&cache, &format!("secretId={}", FakeUpstream::arn_of("app/db")))
        .await
        .expect("home ARN");
    assert_eq!((by_home_arn.outcome, raw(&by_home_arn)), (Outcome::Hit, "pw1".into()));
    assert_eq!((fake.calls(), cache.len()), (2, 2));
}

#[tokio::test(start_paused = true)]
async fn selectors_are_separate_entries() {
    let (cache, fake) = setup(settings());
    fake.put_secret("app/db", "pw2");
    let current = sm(&cache, "secretId=app/db").await.expect("current");
    let previous = sm(&cache, "secretId=app/db&versionStage=AWSPREVIOUS")
        .await
        .expect("previous");
    let explicit = sm(&cache, "secretId=app/db&versionStage=AWSCURRENT")
        .await
        .expect("explicit");
    assert_eq!((raw(&current), raw(&previous)), ("pw2".into(), "pw1".into()));
    assert_eq!(explicit.outcome, Outcome::Hit, "AWSCURRENT is the default entry");
    assert_eq!(fake.calls(), 2);
}

#[tokio::test(start_paused = true)]
async fn refresh_now_is_forced_and_rate_limited() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    fake.put_secret("app/db", "pw2");
    let forced = sm(&cache, "secretId=app/db&refreshNow=true").await.expect("forced");
    assert_eq!((forced.outcome, raw(&forced)), (Outcome::Miss, "pw2".into()));
    assert_eq!(fake.calls(), 2);
    // A second forced request within the interval is answered from the fresh value.
    fake.put_secret("app/db", "pw3");
    let limited = sm(&cache, "secretId=app/db&refreshNow=true").await.expect("limited");
    assert_eq!((limited.outcome, raw(&limited)), (Outcome::Hit, "pw2".into()));
    assert_eq!(fake.calls(), 2);
    advance(Duration::from_secs(1)).await;
    let again = sm(&cache, "secretId=app/db&refreshNow=true")
        .await
        .expect("forced again");
    assert_eq!(raw(&again), "pw3");
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn refresh_now_on_a_failing_upstream_serves_the_held_value() {
    let (cache, fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    fake.fail_next(&[ErrorKind::Unavailable]);
    let served = sm(&cache, "secretId=app/db&refreshNow=true").await.expect("held value");
    assert_eq!((served.outcome, raw(&served)), (Outcome::Stale, "pw1".into()));
}

#[tokio::test(start_paused = true)]
async fn eviction_keeps_the_size_bound_and_drops_the_least_recent() {
    let mut s = settings();
    s.capacity = 3;
    let (cache, fake) = setup(s);
    for name in ["a", "b", "c", "d"] {
        fake.put_secret(name, name);
    }
    for name in ["a", "b", "c"] {
        sm(&cache, &format!("secretId={name}")).await.expect("fetched");
        advance(Duration::from_millis(10)).await;
    }
    // "a" is used again, so "b" is now the least recently used.
    sm(&cache, "secretId=a").await.expect("hit");
    advance(Duration::from_millis(10)).await;
    sm(&cache, "secretId=d").await.expect("fetched");
    assert_eq!(cache.len(), 3);
    let calls = fake.calls();
    assert_eq!(sm(&cache, "secretId=a").await.expect("kept").outcome, Outcome::Hit);
    assert_eq!(
        sm(&cache, "secretId=b").await.expect("refetched").outcome,
        Outcome::Miss
    );
    assert_eq!(fake.calls(), calls + 1);
    assert_eq!(cache.stats().evictions(), 2);
}

#[tokio::test(start_paused = true)]
async fn a_thousand_distinct_ids_stay_within_capacity() {
    let mut s = settings();
    s.capacity = 50;
    let (cache, fake) = setup(s);
    for i in 0..1000 {
        let name = format!("s{i}");
        fake.put_secret(&name, "v");
        sm(&cache, &format!("secretId={name}")).await.expect("fetched");
        assert!(cache.len() <= 50);
    }
}

#[tokio::test(start_paused = true)]
async fn caching_off_fetches_every_time() {
    let mut s = settings();
    s.secrets_manager_ttl = Duration::ZERO;
    let (cache, fake) = setup(s);
    for _ in 0..3 {
        assert_eq!(
            sm(&cache, "secretId=app/db").await.expect("ok").outcome,
            Outcome::Bypass
        );
    }
    assert_eq!(fake.calls(), 3);
    assert!(cache.is_empty());
    // The other source still caches.
    ssm(&cache, "name=/app/plain").await.expect("ok");
    assert_eq!(ssm(&cache, "name=/app/plain").await.expect("ok").outcome, Outcome::Hit);
}

#[tokio::test(start_paused = true)]
async fn decryption_matters_only_for_secure_strings() {
    let (cache, fake) = setup(settings());
    let plain = ssm(&cache, "name=/app/plain&withDecryption=true").await.expect("ok");
    assert_eq!(raw(&plain), "p1");
    let again = ssm(&cache, "name=/app/plain").await.expect("ok");
    assert_eq!(again.outcome, Outcome::Hit, "String parameters ignore the flag");

    let decrypted = ssm(&cache, "name=/app/key&withDecryption=true").await.expect("ok");
    let encrypted = ssm(&cache, "name=/app/key").await.expect("ok");
    assert_eq!(raw(&decrypted), "k1");
    assert_eq!(raw(&encrypted), "kms:alias/aws/ssm:k1");
    assert_eq!(fake.calls(), 3);
}

#[tokio::test(start_paused = true)]
async fn refresh_ahead_bookkeeping() {
    let (cache, _fake) = setup(settings());
    sm(&cache, "secretId=app/db").await.expect("fetched");
    let due = |cache: &Cache| cache.inner.store.due_for_refresh(Instant::now(), |_| false);
    assert!(due(&cache).is_empty());
    advance(TTL.mul_f64(0.5 + super::entry::REFRESH_JITTER)).await;
    let due = due(&cache);
    assert_eq!(due.len(), 1, "used entries past the refresh point are due");
    assert_eq!(&*due[0].1, "app/db", "refreshed with the id the request used");
}

#[tokio::test(start_paused = true)]
async fn shutdown_then_wipe_leaves_no_value_alive() {
    let (cache, fake) = setup(settings());
    let served = sm(&cache, "secretId=app/db").await.expect("fetched");
    ssm(&cache, "name=/app/key&withDecryption=true").await.expect("fetched");
    assert_eq!(cache.len(), 2);
    assert!(cache.live_value_bytes() >= served.value.bytes());
    // A fetch in flight when shutdown begins is cancelled and stores nothing.
    fake.set_latency(Duration::from_secs(5));
    let late = {
        let cache = cache.clone();
        tokio::spawn(async move { ssm(&cache, "name=/app/plain").await })
    };
    tokio::task::yield_now().await;
    cache
        .shutdown(tokio::time::Instant::now() + Duration::from_secs(1))
        .await;
    assert_eq!(
        late.await.expect("task").expect_err("cancelled").kind,
        ErrorKind::Aborted
    );
    cache.wipe();
    assert_eq!(cache.len(), 0);
    assert!(
        cache.live_value_bytes() > 0,
        "an answer still held by a caller is alive"
    );
    drop(served);
    assert_eq!(
        cache.live_value_bytes(),
        0,
        "every value is gone once its last holder drops"
    );
}

#[tokio::test(start_paused = true)]
async fn nothing_is_stored_once_shutdown_began() {
    let (cache, fake) = setup(settings());
    let (key, _) = request(Source::SecretsManager, "secretId=app/db");
    let flight::Begun::New(handle) = flight::begin(&cache, key.clone(), key.id.clone(), keep::FetchFor::PREFETCH)
    else {
        panic!("nothing was in flight");
    };
    let value = flight::fetch_one(&*fake, &crate::backend::Via::HOME, &key, "app/db")
        .await
        .expect("value");
    // A fetch that lands after shutdown began (a batch the tracker could not stop
    // in time) answers its waiters but must not refill the cache before the wipe.
    cache.inner.cancel.cancel();
    handle.finish(Ok(value)).expect("answered");
    assert!(cache.is_empty());
}

/// A request read the store just before a fetch of its key stored the value and
/// left the flight table (a prefetch finishing as the runtime's first request comes
/// in): registering its own fetch then finds the value instead of calling again.
#[tokio::test(start_paused = true)]
async fn a_miss_that_raced_a_finishing_fetch_makes_no_second_call() {
    use super::keep::FetchFor;
    let (cache, fake) = setup(settings());
    let (requested, _) = request(Source::SecretsManager, "secretId=app/db");
    // The request's look: nothing stored yet.
    let looked = cache.inner.store.canonical(&requested).into_owned();
    assert!(cache.inner.store.find(&looked).is_none());
    // Meanwhile the prefetch of the key runs to its end: stored (under the ARN, with
    // the name as an alias) and no longer in flight.
    let plan = cache.plan_prefetch(&[SecretRef::Secret("app/db".into())]);
    assert_eq!(cache.prefetch(plan, Instant::now() + TTL).await.stored, 1);
    assert_eq!(fake.calls(), 1);
    // The request now registers a fetch of what it looked up, as `miss` does.
    let begun = policy::begin_missing(
        &cache,
        &requested,
        looked.clone(),
        requested.id.clone(),
        FetchFor::request(false, true),
    );
    let entry = begun.err().expect("the stored entry, not a fetch of its own");
    assert!(Arc::ptr_eq(
        &entry.value,
        &cache.get(&requested, Freshness::Cached).await.expect("hit").value
    ));
    assert_eq!(fake.calls(), 1, "no second upstream call");
    assert!(
        !cache.inner.flights.contains(&looked),
        "the flight it registered was ended"
    );
}
