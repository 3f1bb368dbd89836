//! Fetching many keys at once, in as few upstream calls as the APIs allow.
//!
//! Used by the start-up prefetch and by refresh-ahead. Keys are grouped into
//! BatchGetSecretValue calls of up to 20 secrets and GetParameters calls of up to 10
//! parameters (decrypted and plain apart); version or label selectors are fetched one
//! by one. When a batch API is refused outright (a role granted GetSecretValue but
//! not BatchGetSecretValue, say) its keys fall back to single calls.

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::debug;

use crate::backend::{answers, Batch, Upstream, UpstreamError, MAX_PARAMETERS_PER_BATCH, MAX_SECRETS_PER_BATCH};
use crate::cache::{fetch_one, Cache, Decrypt, FlightHandle};
use crate::query::Selector;
use crate::refs::Source;

/// What happened to a set of keys.
#[derive(Debug, Default)]
pub struct Tally {
    pub ok: usize,
    /// (fetch id, error) per key that failed.
    pub failed: Vec<(Arc<str>, UpstreamError)>,
    /// The deadline passed: unfinished keys were abandoned (their waiters saw a
    /// transient error; their entries are unchanged).
    pub abandoned: bool,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.ok += other.ok;
        self.failed.extend(other.failed);
    }

    fn finish(&mut self, handle: FlightHandle, result: Result<crate::backend::Value, UpstreamError>) {
        let id = handle.fetch_id().clone();
        match handle.finish(result) {
            Ok(_) => self.ok += 1,
            Err(e) => self.failed.push((id, e)),
        }
    }
}

enum Group {
    Secrets,
    Parameters { decrypt: bool },
    Single,
}

fn group_of(h: &FlightHandle) -> Group {
    let key = h.key();
    match (key.source, &key.selector) {
        (Source::SecretsManager, Selector::Current) => Group::Secrets,
        (Source::Ssm, Selector::Current) => Group::Parameters {
            decrypt: key.decrypt != Decrypt::No,
        },
        _ => Group::Single,
    }
}

/// Fetches every key of `handles`, finishing each handle, until `deadline`. Work
/// still in flight then is cancelled and waited for, so on return no fetch of these
/// keys is registered any more.
pub async fn fetch_all(cache: &Cache, handles: Vec<FlightHandle>, deadline: Instant) -> Tally {
    let mut secrets = Vec::new();
    let mut decrypted = Vec::new();
    let mut plain = Vec::new();
    let mut singles = Vec::new();
    for h in handles {
        match group_of(&h) {
            Group::Secrets => secrets.push(h),
            Group::Parameters { decrypt: true } => decrypted.push(h),
            Group::Parameters { decrypt: false } => plain.push(h),
            Group::Single => singles.push(h),
        }
    }
    let upstream = cache.upstream().clone();
    let mut tasks = JoinSet::new();
    for chunk in chunks(secrets, MAX_SECRETS_PER_BATCH) {
        tasks.spawn(batch(upstream.clone(), chunk, BatchApi::Secrets));
    }
    for (handles, decrypt) in [(decrypted, true), (plain, false)] {
        for chunk in chunks(handles, MAX_PARAMETERS_PER_BATCH) {
            tasks.spawn(batch(upstream.clone(), chunk, BatchApi::Parameters { decrypt }));
        }
    }
    for h in singles {
        tasks.spawn(one_by_one(upstream.clone(), vec![h]));
    }
    let mut tally = Tally::default();
    loop {
        tokio::select! {
            done = tasks.join_next() => match done {
                Some(Ok(t)) => tally.merge(t),
                Some(Err(_)) => {}
                None => break,
            },
            () = tokio::time::sleep_until(deadline) => {
                tasks.shutdown().await;
                tally.abandoned = true;
                break;
            }
        }
    }
    tally
}

fn chunks(mut items: Vec<FlightHandle>, size: usize) -> Vec<Vec<FlightHandle>> {
    let mut out = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(size));
        out.push(std::mem::replace(&mut items, rest));
    }
    out
}

#[derive(Clone, Copy)]
enum BatchApi {
    Secrets,
    Parameters { decrypt: bool },
}

async fn batch(upstream: Arc<dyn Upstream>, handles: Vec<FlightHandle>, api: BatchApi) -> Tally {
    let ids: Vec<String> = handles.iter().map(|h| h.fetch_id().to_string()).collect();
    let result = match api {
        BatchApi::Secrets => upstream.batch_get_secrets(&ids).await,
        BatchApi::Parameters { decrypt } => upstream.get_parameters(&ids, decrypt).await,
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
        let result = fetch_one(&*upstream, h.key(), h.fetch_id()).await;
        tally.finish(h, result);
    }
    tally
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::fake::FakeUpstream;
    use crate::backend::ErrorKind;
    use crate::cache::{Begun, CacheSettings, FetchFor, Key};
    use crate::metrics::Metrics;
    use std::sync::atomic::Ordering::SeqCst;
    use std::time::Duration;

    fn cache(fake: Arc<FakeUpstream>) -> Cache {
        let settings = CacheSettings {
            capacity: 1000,
            enabled: true,
            secrets_manager_ttl: Duration::from_secs(60),
            ssm_ttl: Duration::from_secs(60),
            max_stale: Duration::from_secs(60),
            refresh_ahead: 0.5,
            refresh_now_interval: Duration::from_secs(1),
        };
        Cache::new(settings, fake, Arc::new(Metrics::default()))
    }

    fn far() -> Instant {
        Instant::now() + Duration::from_secs(3600)
    }

    fn handles(cache: &Cache, source: Source, ids: &[String]) -> Vec<FlightHandle> {
        ids.iter()
            .filter_map(|id| {
                match cache.begin(
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
