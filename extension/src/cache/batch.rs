//! Fetching many keys at once, in as few upstream calls as the APIs allow.
//!
//! Used by the start-up prefetch, refresh-ahead and `get_many`. Keys are grouped into
//! BatchGetSecretValue calls of up to 20 secrets and GetParameters calls of up to 10
//! parameters (decrypted and plain apart); version or label selectors are fetched one
//! by one. When a batch API is refused outright (a role granted GetSecretValue but
//! not BatchGetSecretValue, say) its keys fall back to single calls. Every batch runs
//! under the cache's task tracker, so shutdown cancels it and waits for it.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{debug, error};

use super::flight::{fetch_one, FlightHandle};
use super::key::Decrypt;
use super::Cache;
use crate::backend::{
    answers, Batch, Upstream, UpstreamError, Value, Via, MAX_PARAMETERS_PER_BATCH, MAX_SECRETS_PER_BATCH,
};
use crate::model::Source;

/// What happened to a set of keys.
#[derive(Debug, Default)]
pub(super) struct Tally {
    pub(super) ok: usize,
    /// (fetch id, error) per key that failed.
    pub(super) failed: Vec<(Arc<str>, UpstreamError)>,
    /// The deadline passed or the cache shut down: unfinished keys were abandoned
    /// (their waiters saw a transient error; their entries are unchanged).
    pub(super) abandoned: bool,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed.extend(other.failed);
    }

    fn finish(&mut self, handle: FlightHandle, result: Result<Value, UpstreamError>) {
        let id = handle.fetch_id().clone();
        match handle.finish(result) {
            Ok(_) => self.ok += 1,
            Err(e) => self.failed.push((id, e)),
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Api {
    Secrets,
    Parameters { decrypt: bool },
    Single,
}

fn api_of(h: &FlightHandle) -> Api {
    let key = h.key();
    match (key.source, key.batchable()) {
        (Source::SecretsManager, true) => Api::Secrets,
        (Source::Ssm, true) => Api::Parameters {
            decrypt: key.decrypt != Decrypt::No,
        },
        (_, false) => Api::Single,
    }
}

/// Fetches every key of `handles`, finishing each handle, until `deadline` (none:
/// until done; the SDK's own timeouts bound each call). Work still in flight then is
/// cancelled and waited for, so on return no fetch of these keys is registered any more.
pub(super) async fn fetch_all(cache: &Cache, handles: Vec<FlightHandle>, deadline: Option<Instant>) -> Tally {
    // Keys batch together only when they share an API and a way of calling it
    // (scope, attempts).
    let mut groups: Vec<(Api, Via, Vec<FlightHandle>)> = Vec::new();
    let mut singles = Vec::new();
    for h in handles {
        let api = api_of(&h);
        if matches!(api, Api::Single) {
            singles.push(h);
            continue;
        }
        let via = h.via();
        match groups.iter_mut().find(|(a, v, _)| *a == api && *v == via) {
            Some((_, _, members)) => members.push(h),
            None => groups.push((api, via, vec![h])),
        }
    }
    let mut jobs: Vec<(Api, Vec<FlightHandle>)> = Vec::new();
    for (api, _, members) in groups {
        let size = match api {
            Api::Secrets => MAX_SECRETS_PER_BATCH,
            _ => MAX_PARAMETERS_PER_BATCH,
        };
        jobs.extend(chunks(members, size).into_iter().map(|c| (api, c)));
    }
    jobs.extend(singles.into_iter().map(|h| (Api::Single, vec![h])));

    let upstream = cache.upstream().clone();
    let mut tasks = JoinSet::new();
    // What each task fetches, to name it if it panics.
    let mut names = std::collections::HashMap::new();
    for (api, handles) in jobs {
        let name = describe(api, &handles);
        let id = tasks.spawn(cache.tracked(batch(upstream.clone(), handles, api))).id();
        names.insert(id, name);
    }
    let mut tally = Tally::default();
    let expired = async {
        match deadline {
            Some(d) => tokio::time::sleep_until(d).await,
            None => std::future::pending().await,
        }
    };
    tokio::pin!(expired);
    loop {
        tokio::select! {
            done = tasks.join_next_with_id() => match done {
                Some(Ok((_, Some(t)))) => tally.merge(t),
                // Cancelled by shutdown: its handles dropped, waking their waiters.
                Some(Ok((_, None))) => tally.abandoned = true,
                Some(Err(e)) => {
                    let batch = names.get(&e.id()).map_or("?", String::as_str);
                    error!(%batch, error = %e, "batch fetch task failed; its keys were abandoned");
                    tally.abandoned = true;
                }
                None => break,
            },
            () = &mut expired => {
                tasks.shutdown().await;
                tally.abandoned = true;
                break;
            }
        }
    }
    tally
}

/// A batch named for logs: its API, size and first id.
fn describe(api: Api, handles: &[FlightHandle]) -> String {
    let first = handles.first().map_or("", |h| &**h.fetch_id());
    format!("{api:?} of {} (first: {first})", handles.len())
}

fn chunks(mut items: Vec<FlightHandle>, size: usize) -> Vec<Vec<FlightHandle>> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(size));
        out.push(std::mem::replace(&mut items, rest));
    }
    out
}

async fn batch(upstream: Arc<dyn Upstream>, handles: Vec<FlightHandle>, api: Api) -> Tally {
    let ids: Vec<String> = handles.iter().map(|h| h.fetch_id().to_string()).collect();
    let via = handles.first().map_or(Via::HOME, FlightHandle::via);
    let result = match api {
        Api::Secrets => upstream.batch_get_secrets(&via, &ids).await,
        Api::Parameters { decrypt } => upstream.get_parameters(&via, &ids, decrypt).await,
        Api::Single => return one_by_one(upstream, handles).await,
    };
    match result {
        Ok(b) => settle(upstream, handles, b).await,
        Err(e) if !e.kind.is_transient() => {
            debug!(error = %e, keys = handles.len(), "batch call refused; fetching one by one");
            one_by_one(upstream, handles).await
        }
        Err(e) => {
            let mut tally = Tally::default();
            for h in handles {
                tally.finish(h, Err(e.clone()));
            }
            tally
        }
    }
}

/// Hands each returned value to the key that asked for it; keys the batch neither
/// answered nor reported as failed are fetched singly.
async fn settle(upstream: Arc<dyn Upstream>, handles: Vec<FlightHandle>, batch: Batch) -> Tally {
    let Batch { mut values, errors } = batch;
    let mut tally = Tally::default();
    let mut leftovers = Vec::new();
    for h in handles {
        if let Some(i) = values.iter().position(|v| answers(h.fetch_id(), v)) {
            let v = values.swap_remove(i);
            tally.finish(h, Ok(v));
        } else if let Some((_, e)) = errors.iter().find(|(id, _)| **id == **h.fetch_id()) {
            tally.finish(h, Err(e.clone()));
        } else {
            leftovers.push(h);
        }
    }
    if !leftovers.is_empty() {
        tally.merge(one_by_one(upstream, leftovers).await);
    }
    tally
}

async fn one_by_one(upstream: Arc<dyn Upstream>, handles: Vec<FlightHandle>) -> Tally {
    let mut tally = Tally::default();
    for h in handles {
        let result = fetch_one(&*upstream, &h.via(), h.key(), h.fetch_id()).await;
        tally.finish(h, result);
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::backend::ErrorKind;
    use crate::cache::flight::Begun;
    use crate::cache::keep::FetchFor;
    use crate::cache::{CacheSettings, Key};
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    fn cache(fake: Arc<FakeUpstream>) -> Cache {
        let settings = CacheSettings::for_tests(1000, Duration::from_secs(60));
        Cache::new(settings, fake)
    }

    fn far() -> Option<Instant> {
        Some(Instant::now() + Duration::from_secs(3600))
    }

    fn handles(cache: &Cache, source: Source, ids: &[String]) -> Vec<FlightHandle> {
        ids.iter()
            .filter_map(|id| {
                match crate::cache::flight::begin(
                    cache,
                    Key::current(source, Arc::from(id.as_str())),
                    Arc::from(id.as_str()),
                    FetchFor::PREFETCH,
                ) {
                    Begun::New(h) => Some(h),
                    Begun::Joined(_) => None,
                }
            })
            .collect()
    }

    #[tokio::test]
    async fn secrets_and_parameters_are_batched_by_api_limits() {
        let fake = Arc::new(FakeUpstream::new());
        let secrets: Vec<String> = (0..45).map(|i| format!("s{i}")).collect();
        let params: Vec<String> = (0..25).map(|i| format!("/p/{i}")).collect();
        for s in &secrets {
            fake.put_secret(s, "v");
        }
        for p in &params {
            fake.put_param(p, "SecureString", "v");
        }
        let cache = cache(fake.clone());
        let mut all = handles(&cache, Source::SecretsManager, &secrets);
        all.extend(handles(&cache, Source::Ssm, &params));
        let tally = fetch_all(&cache, all, far()).await;
        assert_eq!(tally.ok, 70);
        assert!(tally.failed.is_empty());
        // 45 secrets → 3 calls of ≤20; 25 parameters → 3 calls of ≤10.
        assert_eq!(fake.batch_calls.load(SeqCst), 6);
        assert_eq!(fake.calls(), 6);
        assert_eq!(cache.len(), 70);
    }

    #[tokio::test]
    async fn missing_ids_are_reported_per_key() {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("here", "v");
        let cache = cache(fake.clone());
        let ids = vec!["here".to_string(), "gone".to_string()];
        let tally = fetch_all(&cache, handles(&cache, Source::SecretsManager, &ids), far()).await;
        assert_eq!(tally.ok, 1);
        assert_eq!(tally.failed.len(), 1);
        assert_eq!(&*tally.failed[0].0, "gone");
        assert_eq!(tally.failed[0].1.kind, ErrorKind::NotFound);
    }

    #[tokio::test]
    async fn a_refused_batch_falls_back_to_single_calls() {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("a", "v");
        fake.put_secret("b", "v");
        fake.fail_next(&[ErrorKind::AccessDenied]);
        let cache = cache(fake.clone());
        let ids = vec!["a".to_string(), "b".to_string()];
        let tally = fetch_all(&cache, handles(&cache, Source::SecretsManager, &ids), far()).await;
        assert_eq!(tally.ok, 2);
        assert_eq!(fake.calls(), 3, "one refused batch, then two single calls");
    }

    #[tokio::test]
    async fn a_panicking_batch_abandons_its_keys_and_the_rest_go_on() {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("a", "v");
        fake.put_param("/p", "String", "v");
        fake.panic_next();
        let cache = cache(fake.clone());
        let mut all = handles(&cache, Source::SecretsManager, &["a".to_string()]);
        all.extend(handles(&cache, Source::Ssm, &["/p".to_string()]));
        let waiter = match crate::cache::flight::begin(
            &cache,
            Key::current(Source::SecretsManager, "a".into()),
            "a".into(),
            FetchFor::PREFETCH,
        ) {
            Begun::Joined(rx) => rx,
            Begun::New(_) => panic!("the key is in flight"),
        };
        let tally = fetch_all(&cache, all, far()).await;
        assert!(tally.abandoned, "{tally:?}");
        assert_eq!(tally.ok, 1, "the other batch still stored its key");
        let woken = crate::cache::flight::wait(waiter).await.expect_err("abandoned");
        assert_eq!(
            woken.kind,
            ErrorKind::Aborted,
            "waiters of the panicked batch are released"
        );
        assert!(!cache
            .inner
            .flights
            .contains(&Key::current(Source::SecretsManager, "a".into())));
    }

    #[tokio::test]
    async fn a_transient_batch_failure_fails_its_keys_without_more_calls() {
        let fake = Arc::new(FakeUpstream::new());
        fake.put_secret("a", "v");
        fake.put_secret("b", "v");
        fake.fail_next(&[ErrorKind::Throttled]);
        let cache = cache(fake.clone());
        let ids = vec!["a".to_string(), "b".to_string()];
        let tally = fetch_all(&cache, handles(&cache, Source::SecretsManager, &ids), far()).await;
        assert_eq!((tally.ok, tally.failed.len()), (0, 2));
        assert_eq!(fake.calls(), 1);
    }
}
