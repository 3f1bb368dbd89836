//! Start-up prefetch of `SECRETS_SIDECAR_PREFETCH` and `..._REQUIRED`.
//!
//! Every key is registered as a fetch in flight before the first upstream call, so
//! a request that arrives during INIT for one of them waits for the batch instead of
//! starting a second call; a request for a parameter under a path being prefetched
//! waits for that path. Values stored here are pinned: refresh-ahead keeps them warm
//! whether or not they have been used yet.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::batch::{fetch_all, Tally};
use super::entry::backoff;
use super::flight;
use super::flight::{Begun, FlightHandle, PathGuard};
use super::jitter;
use super::keep;
use super::keep::FetchFor;
use super::{Cache, Key};
use crate::backend::{ErrorKind, UpstreamError, Via};
use crate::model::{Scope, SecretRef, Source};

/// Stops a path prefetch from filling the cache with more than it can hold.
const MAX_PATH_PAGES: usize = 1000;

#[derive(Debug, Default)]
pub struct Report {
    /// Values stored.
    pub stored: usize,
    /// References that could not be fetched, with the reason (kind and AWS message).
    pub failures: Vec<(SecretRef, UpstreamError)>,
    pub elapsed: Duration,
}

impl Report {
    /// Which of `required` (`SECRETS_SIDECAR_REQUIRED`) are not available, with why.
    pub fn missing(&self, required: &[SecretRef]) -> Vec<(SecretRef, String)> {
        required
            .iter()
            .filter_map(|r| {
                let (_, e) = self.failures.iter().find(|(f, _)| f == r)?;
                Some((r.clone(), format!("{} ({})", e.kind.label(), e.detail)))
            })
            .collect()
    }
}

/// The start-up keys and paths, registered as fetches in flight but not started.
///
/// Made before the listener accepts its first connection: a request that arrives
/// during INIT (the runtime starts as soon as the extensions have registered) then
/// joins the batch instead of racing it with a call of its own.
pub struct Plan {
    /// Where every reference is read (the home scope but for a tenant's role).
    scope: Scope,
    refs: Vec<SecretRef>,
    handles: Vec<FlightHandle>,
    paths: Vec<(String, PathGuard)>,
    started: Instant,
}

/// A key of the plan's scope.
fn key_in(scope: &Scope, source: Source, id: Arc<str>) -> Key {
    Key::current(source, id).with_scope(scope.clone())
}

fn via(scope: &Scope) -> Via {
    Via {
        scope: scope.clone(),
        ..Via::HOME
    }
}

/// Registers every key of `refs` (read in `scope`) as in flight and every path as
/// being fetched.
pub(super) fn plan(cache: &Cache, scope: &Scope, refs: &[SecretRef]) -> Plan {
    let mut handles = Vec::new();
    let mut paths = Vec::new();
    for r in refs {
        let key = match r {
            SecretRef::Secret(id) => key_in(scope, Source::SecretsManager, Arc::from(id.as_str())),
            SecretRef::Parameter(name) => key_in(scope, Source::Ssm, Arc::from(name.as_str())),
            SecretRef::Path(prefix) => {
                paths.push((prefix.clone(), cache.inner.flights.begin_path(cache, prefix)));
                continue;
            }
            // Which secrets carry the tag is known only once listed (`fetch_tagged`).
            SecretRef::Tag(_) => continue,
        };
        // Joined: already in flight (a duplicate reference); that fetch stores it.
        if let Begun::New(h) = flight::begin(cache, key, Arc::from(r.id()), FetchFor::PREFETCH) {
            handles.push(h);
        }
    }
    Plan {
        scope: scope.clone(),
        refs: refs.to_vec(),
        handles,
        paths,
        started: Instant::now(),
    }
}

/// Runs a [`plan`]: the fetches its waiters are already waiting for, in as few calls
/// as the APIs allow, giving up at `deadline`.
pub(super) async fn run(cache: &Cache, plan: Plan, deadline: Instant) -> Report {
    let Plan {
        scope,
        refs,
        handles,
        paths,
        started,
    } = plan;
    if refs.is_empty() {
        return Report::default();
    }
    let path_jobs = async {
        let mut results = Vec::new();
        for (prefix, guard) in paths {
            // Tracked like the batches: shutdown cancels it and waits for it.
            let job = cache.tracked(fetch_path(cache.clone(), scope.clone(), prefix.clone(), guard));
            let result = match tokio::time::timeout_at(deadline, job).await {
                Ok(Some(r)) => r,
                Ok(None) => Err(UpstreamError::aborted("shutting down")),
                Err(_) => Err(timed_out()),
            };
            results.push((prefix, result));
        }
        results
    };
    let tag_jobs = async {
        let mut results = Vec::new();
        for r in refs.iter().filter(|r| matches!(r, SecretRef::Tag(_))) {
            let job = cache.tracked(fetch_tagged(cache.clone(), scope.clone(), r.clone(), deadline));
            let result = match tokio::time::timeout_at(deadline, job).await {
                Ok(Some(r)) => r,
                Ok(None) => Err(UpstreamError::aborted("shutting down")),
                Err(_) => Err(timed_out()),
            };
            results.push((r.clone(), result));
        }
        results
    };
    let keys: Vec<SecretRef> = refs
        .iter()
        .filter(|r| matches!(r, SecretRef::Secret(_) | SecretRef::Parameter(_)))
        .cloned()
        .collect();
    let (tally, path_results, tag_results) = tokio::join!(
        fetch_with_retries(cache, &scope, &keys, handles, deadline),
        path_jobs,
        tag_jobs
    );

    let mut report = Report {
        stored: tally.ok,
        ..Report::default()
    };
    for (id, e) in tally.failed {
        if let Some(r) = keys.iter().find(|r| r.id() == &*id) {
            report.failures.push((r.clone(), e));
        }
    }
    if tally.abandoned {
        // Keys neither stored nor failed were cut off by the deadline.
        for r in &keys {
            let settled = report.failures.iter().any(|(f, _)| f == r) || cache_holds(cache, &scope, r);
            if !settled {
                report.failures.push((r.clone(), timed_out()));
            }
        }
    }
    // What the deadline left missing after transient failures (or unfinished) stays
    // wanted: refresh-ahead fetches it later, with backoff (not in the naive baseline).
    if jitter::spreading() && !cache.closed() {
        let now = Instant::now();
        for (r, e) in &report.failures {
            if e.kind.is_transient() && !cache_holds(cache, &scope, r) {
                let id: Arc<str> = Arc::from(r.id());
                cache
                    .inner
                    .wanted
                    .want(key_in(&scope, r.source(), id.clone()), id, 1, now);
            }
        }
    }
    for (prefix, result) in path_results {
        match result {
            Ok(0) => report.failures.push((
                SecretRef::Path(prefix),
                UpstreamError::new(ErrorKind::NotFound, "no parameters under this path"),
            )),
            Ok(n) => report.stored += n,
            Err(e) => report.failures.push((SecretRef::Path(prefix), e)),
        }
    }
    for (tag, result) in tag_results {
        match result {
            Ok(n) => report.stored += n,
            Err(e) => report.failures.push((tag, e)),
        }
    }
    report.elapsed = started.elapsed();
    for (r, e) in &report.failures {
        warn!(reference = %r, kind = e.kind.label(), detail = %e.detail, "prefetch failed");
    }
    info!(
        refs = refs.len(),
        stored = report.stored,
        failed = report.failures.len(),
        elapsed_ms = report.elapsed.as_millis() as u64,
        "prefetch settled"
    );
    report
}

/// Fetches the keys' handles, then retries the keys that failed transiently
/// (throttled, say: a fleet starting together meets the API quota) with jittered,
/// growing pauses while the deadline allows. Requests that waited on a failed
/// attempt got its error; later ones join the retry.
async fn fetch_with_retries(
    cache: &Cache,
    scope: &Scope,
    keys: &[SecretRef],
    handles: Vec<FlightHandle>,
    deadline: Instant,
) -> Tally {
    let mut tally = fetch_all(cache, handles, Some(deadline)).await;
    let mut round = 0;
    while jitter::spreading() && !tally.abandoned && !cache.closed() {
        let retry: Vec<&SecretRef> = keys
            .iter()
            .filter(|r| {
                tally
                    .failed
                    .iter()
                    .any(|(id, e)| e.kind.is_transient() && **id == *r.id())
            })
            .collect();
        if retry.is_empty() {
            break;
        }
        round += 1;
        let pause = backoff(round);
        if Instant::now() + pause >= deadline {
            break;
        }
        tokio::select! {
            () = cache.inner.cancel.cancelled() => break,
            () = tokio::time::sleep(pause) => {}
        }
        let mut again = Vec::new();
        for r in &retry {
            let key = key_in(scope, r.source(), Arc::from(r.id()));
            if let Begun::New(h) = flight::begin(cache, key, Arc::from(r.id()), FetchFor::PREFETCH) {
                again.push(h);
            }
        }
        debug!(
            round,
            keys = again.len(),
            "retrying the prefetch of keys that failed transiently"
        );
        let retried = fetch_all(cache, again, Some(deadline)).await;
        tally.failed.retain(|(id, _)| !retry.iter().any(|r| r.id() == &**id));
        tally.ok += retried.ok;
        tally.failed.extend(retried.failed);
        tally.abandoned = retried.abandoned;
    }
    // A key a request fetched meanwhile is no failure.
    tally
        .failed
        .retain(|(id, _)| !keys.iter().any(|r| r.id() == &**id && cache_holds(cache, scope, r)));
    tally
}

/// Lists the secrets carrying a tag (ListSecrets: metadata, matched exactly), keeps
/// those the allowlist permits, and fetches them in batches like any prefetched id.
/// Returns how many were stored; an error when none carries the tag or any failed.
async fn fetch_tagged(cache: Cache, scope: Scope, tag: SecretRef, deadline: Instant) -> Result<usize, UpstreamError> {
    let (key, value) = tag.tag().unwrap_or_default();
    let listed = cache.upstream().list_secrets_by_tag(&via(&scope), key, value).await?;
    let allow = cache.settings().allow.as_ref();
    let matches: Vec<SecretRef> = listed
        .iter()
        .filter(|l| allow.is_none_or(|a| a.permits_secret(&l.name, &l.arn)))
        .map(|l| SecretRef::Secret(l.arn.clone()))
        .collect();
    if matches.is_empty() {
        let why = if listed.is_empty() {
            ""
        } else {
            " inside SECRETS_SIDECAR_ALLOW"
        };
        return Err(UpstreamError::new(
            ErrorKind::NotFound,
            format!("no secret carries this tag{why}"),
        ));
    }
    info!(%tag, secrets = matches.len(), "tag matched");
    // Fetched by ARN, a value's name is no alias of it (it could be another region's
    // or account's); these ARNs were listed here, so their names are.
    for l in listed.iter().filter(|l| matches.iter().any(|m| m.id() == l.arn)) {
        cache
            .inner
            .store
            .alias(&scope, Source::SecretsManager, &l.name, &Arc::from(&*l.arn));
    }
    let mut handles = Vec::new();
    for r in &matches {
        let key = key_in(&scope, Source::SecretsManager, Arc::from(r.id()));
        if let Begun::New(h) = flight::begin(&cache, key, Arc::from(r.id()), FetchFor::PREFETCH) {
            handles.push(h);
        }
    }
    let tally = fetch_with_retries(&cache, &scope, &matches, handles, deadline).await;
    match tally.failed.first() {
        Some((id, e)) => Err(UpstreamError::new(e.kind, format!("{id}: {}", e.detail))),
        None => Ok(tally.ok),
    }
}

fn timed_out() -> UpstreamError {
    UpstreamError::new(
        ErrorKind::Timeout,
        "start-up budget (SECRETS_SIDECAR_INIT_TIMEOUT_MILLIS) spent",
    )
}

fn cache_holds(cache: &Cache, scope: &Scope, r: &SecretRef) -> bool {
    let key = key_in(scope, r.source(), Arc::from(r.id()));
    let store = &cache.inner.store;
    store.find(&store.canonical(&key)).is_some()
}

/// Stores every parameter under `prefix`, page by page; the guard holds requests
/// for names under the path until it is done.
async fn fetch_path(cache: Cache, scope: Scope, prefix: String, guard: PathGuard) -> Result<usize, UpstreamError> {
    let upstream = cache.upstream().clone();
    let mut token: Option<String> = None;
    let mut stored = 0;
    for _ in 0..MAX_PATH_PAGES {
        let page = upstream
            .get_parameters_by_path(&via(&scope), &prefix, true, token.as_deref())
            .await?;
        for value in page.values {
            let name = value.name.clone();
            let key = key_in(&scope, Source::Ssm, name.clone());
            // A path's items are checked one by one, like any fetched value.
            let Ok(value) = keep::admit(&cache, &key, &name, value) else {
                continue;
            };
            keep::keep(&cache, &key, &name, value, FetchFor::PREFETCH);
            stored += 1;
        }
        match page.next_token {
            Some(t) if stored < cache.settings().capacity => token = Some(t),
            _ => break,
        }
    }
    drop(guard);
    Ok(stored)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::cache::{CacheSettings, Freshness, Outcome};
    use crate::model::{parse_ref_list, Selector};

    fn secret(id: &str) -> Key {
        Key::new(Source::SecretsManager, id.into(), Selector::Current, false)
    }

    fn param(name: &str, decrypt: bool) -> Key {
        Key::new(Source::Ssm, name.into(), Selector::Current, decrypt)
    }

    async fn prefetch(cache: &Cache, refs: &[SecretRef], deadline: Instant) -> Report {
        cache.prefetch(cache.plan_prefetch(refs), deadline).await
    }

    fn setup() -> (Cache, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        let settings = CacheSettings::for_tests(1000, Duration::from_secs(60));
        (Cache::new(settings, fake.clone()), fake)
    }

    #[tokio::test]
    async fn prefetched_values_are_hits() {
        let (cache, fake) = setup();
        fake.put_secret("db", "pw");
        fake.put_param("/k", "SecureString", "k");
        for i in 0..5 {
            fake.put_param(&format!("/team/here/{i}"), "String", "v");
        }
        let refs = parse_ref_list("secretsmanager:db ssm:/k ssm-path:/team/").expect("refs");
        let report = prefetch(&cache, &refs, Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(report.stored, 7);
        assert!(report.failures.is_empty());
        let calls = fake.calls();
        assert_eq!(calls, 5, "one batch per API, three pages for the path");
        let hit = cache.get(&secret("db"), Freshness::Cached).await.expect("value");
        assert_eq!(hit.outcome, Outcome::Hit);
        let hit = cache
            .get(&param("/team/here/3", false), Freshness::Cached)
            .await
            .expect("value");
        assert_eq!(hit.outcome, Outcome::Hit);
        let hit = cache.get(&param("/k", true), Freshness::Cached).await.expect("value");
        assert_eq!(hit.outcome, Outcome::Hit);
        assert_eq!(fake.calls(), calls);
    }

    #[tokio::test(start_paused = true)]
    async fn requests_during_prefetch_wait_for_it() {
        let (cache, fake) = setup();
        fake.put_secret("db", "pw");
        fake.put_param("/team/a", "String", "v");
        fake.set_latency(Duration::from_millis(300));
        let refs = parse_ref_list("secretsmanager:db ssm-path:/team/").expect("refs");
        let running = {
            let cache = cache.clone();
            tokio::spawn(async move { prefetch(&cache, &refs, Instant::now() + Duration::from_secs(60)).await })
        };
        tokio::task::yield_now().await;
        let waiting: Vec<_> = ["db", "db"]
            .iter()
            .map(|id| {
                let cache = cache.clone();
                let key = secret(id);
                tokio::spawn(async move { cache.get(&key, Freshness::Cached).await })
            })
            .collect();
        let under_path = {
            let cache = cache.clone();
            let key = param("/team/a", false);
            tokio::spawn(async move { cache.get(&key, Freshness::Cached).await })
        };
        for w in waiting {
            w.await.expect("task").expect("value");
        }
        under_path.await.expect("task").expect("value");
        running.await.expect("task");
        assert_eq!(fake.calls(), 2, "the requests made no calls of their own");
    }

    #[tokio::test(start_paused = true)]
    async fn requests_between_plan_and_run_join_the_batch() {
        // The lifecycle plans before the first accept and runs after registering:
        // a request in that gap must wait for the batch, not call on its own.
        let (cache, fake) = setup();
        fake.put_secret("db", "pw");
        fake.put_secret("other", "pw");
        fake.put_param("/team/a", "String", "v");
        let refs = parse_ref_list("secretsmanager:db secretsmanager:other ssm-path:/team/").expect("refs");
        let planned = cache.plan_prefetch(&refs);
        let early: Vec<_> = ["db", "other"]
            .iter()
            .map(|id| {
                let cache = cache.clone();
                let key = secret(id);
                tokio::spawn(async move { cache.get(&key, Freshness::Cached).await })
            })
            .chain(std::iter::once({
                let cache = cache.clone();
                let key = param("/team/a", false);
                tokio::spawn(async move { cache.get(&key, Freshness::Cached).await })
            }))
            .collect();
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert_eq!(fake.calls(), 0, "the early requests are waiting, not calling");
        let report = cache.prefetch(planned, Instant::now() + Duration::from_secs(60)).await;
        assert_eq!(report.stored, 3, "the batch stored every key: {report:?}");
        for r in early {
            r.await.expect("task").expect("value");
        }
        assert_eq!(fake.calls(), 2, "one batch and one path page, nothing else");
    }

    #[tokio::test(start_paused = true)]
    async fn the_deadline_reports_unfinished_refs_as_timed_out() {
        let (cache, fake) = setup();
        fake.put_secret("db", "pw");
        fake.put_param("/team/a", "String", "v");
        fake.set_latency(Duration::from_secs(30));
        let refs = parse_ref_list("secretsmanager:db ssm-path:/team/").expect("refs");
        let report = prefetch(&cache, &refs, Instant::now() + Duration::from_secs(1)).await;
        assert_eq!(report.failures.len(), 2);
        assert!(report.failures.iter().all(|(_, e)| e.kind == ErrorKind::Timeout));
        assert_eq!(report.missing(&refs).len(), 2);
    }

    #[tokio::test]
    async fn required_failures_are_named() {
        let (cache, fake) = setup();
        fake.put_secret("db", "pw");
        let refs = parse_ref_list("secretsmanager:db secretsmanager:gone ssm-path:/empty/").expect("refs");
        let report = prefetch(&cache, &refs, Instant::now() + Duration::from_secs(60)).await;
        let missing = report.missing(&refs);
        let names: Vec<String> = missing.iter().map(|(r, _)| r.to_string()).collect();
        assert_eq!(names, ["secretsmanager:gone", "ssm-path:/empty/"]);
        assert!(missing[0].1.starts_with("not_found"));
    }
}

#[cfg(test)]
mod tag_tests {
    use super::*;
    use crate::allow::AllowList;
    use crate::backend::fake::FakeUpstream;
    use crate::cache::{CacheSettings, Freshness, Outcome};
    use crate::model::{parse_ref_list, Selector};

    /// Two secrets tagged team=weather, and look-alikes a prefix filter would let in.
    fn tagged(allow: Option<&str>) -> (Cache, Arc<FakeUpstream>) {
        let fake = Arc::new(FakeUpstream::new());
        for (name, key, value) in [
            ("w/a", "team", "weather"),
            ("w/b", "team", "weather"),
            ("w/prefix-value", "team", "weather-x"),
            ("w/prefix-key", "teams", "weather"),
            ("w/other", "team", "other"),
        ] {
            fake.put_secret(name, "v");
            fake.tag_secret(name, key, value);
        }
        let settings = CacheSettings {
            allow: allow.map(|a| AllowList::parse(a).expect("allow")),
            tenancy: None,
            ..CacheSettings::for_tests(1000, Duration::from_secs(60))
        };
        (Cache::new(settings, fake.clone()), fake)
    }

    async fn outcome(cache: &Cache, name: &str) -> Outcome {
        let key = Key::new(Source::SecretsManager, name.into(), Selector::Current, false);
        cache.get(&key, Freshness::Cached).await.expect("value").outcome
    }

    async fn run(cache: &Cache, refs: &str) -> Report {
        let refs = parse_ref_list(refs).expect("refs");
        cache
            .prefetch(cache.plan_prefetch(&refs), Instant::now() + Duration::from_secs(30))
            .await
    }

    #[tokio::test]
    async fn a_tag_with_a_value_prefetches_exactly_its_secrets_in_one_batch() {
        let (cache, fake) = tagged(None);
        let report = run(&cache, "secretsmanager-tag:team=weather").await;
        assert_eq!(report.stored, 2, "{report:?}");
        assert_eq!(fake.calls(), 2, "one ListSecrets, one BatchGetSecretValue");
        assert_eq!(outcome(&cache, "w/a").await, Outcome::Hit);
        assert_eq!(outcome(&cache, "w/b").await, Outcome::Hit);
        assert_eq!(outcome(&cache, "w/prefix-value").await, Outcome::Miss);
        assert_eq!(outcome(&cache, "w/prefix-key").await, Outcome::Miss);
    }

    #[tokio::test]
    async fn a_tag_key_alone_matches_any_value_of_exactly_that_key() {
        let (cache, _) = tagged(None);
        let report = run(&cache, "secretsmanager-tag:team").await;
        assert_eq!(report.stored, 4, "{report:?}");
        assert_eq!(outcome(&cache, "w/other").await, Outcome::Hit);
        assert_eq!(outcome(&cache, "w/prefix-key").await, Outcome::Miss);
    }

    #[tokio::test]
    async fn matches_outside_the_allowlist_are_not_fetched() {
        let (cache, fake) = tagged(Some("secretsmanager:w/a"));
        let report = run(&cache, "secretsmanager-tag:team=weather").await;
        assert_eq!(report.stored, 1, "{report:?}");
        assert_eq!(fake.calls(), 2);
        assert_eq!(cache.len(), 1);
    }

    #[tokio::test]
    async fn a_tag_nothing_carries_is_reported_as_missing() {
        let (cache, _) = tagged(None);
        let refs = parse_ref_list("secretsmanager-tag:team=nobody").expect("refs");
        let report = run(&cache, "secretsmanager-tag:team=nobody").await;
        let missing = report.missing(&refs);
        assert_eq!(missing.len(), 1);
        assert!(missing[0].1.starts_with("not_found"), "{missing:?}");
    }
}
