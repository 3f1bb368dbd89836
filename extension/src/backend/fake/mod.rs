//! An in-memory [`Upstream`](super::Upstream) for unit tests: secrets with AWSCURRENT/AWSPREVIOUS,
//! parameters with versions, injected failures and latency, and call counts. Set up
//! here; answered in `serve`.

mod serve;

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use super::{Attempts, ErrorKind, Listed, SecretFields, UpstreamError, Value, Via};

#[derive(Clone)]
struct FakeSecret {
    arn: String,
    /// Set for a secret of another region or account: found by ARN only, and
    /// named this (the map key is then its ARN).
    elsewhere_name: Option<String>,
    tags: Vec<(String, String)>,
    /// (version id, value); the last is AWSCURRENT, the one before AWSPREVIOUS.
    versions: Vec<(String, String)>,
}

#[derive(Clone)]
struct FakeParam {
    kind: &'static str,
    /// Values by version, version 1 first.
    versions: Vec<String>,
}

#[derive(Default)]
pub struct FakeUpstream {
    secrets: Mutex<HashMap<String, FakeSecret>>,
    params: Mutex<HashMap<String, FakeParam>>,
    failures: Mutex<VecDeque<ErrorKind>>,
    fail_all: Mutex<Option<ErrorKind>>,
    latency: Mutex<Duration>,
    /// The next call panics (a bug in a batch task, as the cache must survive it).
    panic_next: std::sync::atomic::AtomicBool,
    pub calls: AtomicUsize,
    pub batch_calls: AtomicUsize,
    /// Calls made with a single attempt ([`Attempts::Once`]).
    pub single_attempt_calls: AtomicUsize,
    /// The role of every call, in order (`None`: the function's own credentials).
    roles: Mutex<Vec<Option<String>>>,
    /// SDK-route operations forwarded ([`Passthrough`]): target and body.
    forwarded: Mutex<Vec<(String, Vec<u8>)>>,
    /// What a forwarded operation answers (status, body); `200 {}` when unset.
    forward_answer: Mutex<Option<(u16, String)>>,
}

/// The fake's own credentials, which SDK-route tests sign with.
pub const FAKE_ACCESS_KEY: &str = "AKIDSIDECARFAKE";
pub const FAKE_SECRET_KEY: &str = "fake-secret-access-key";
pub const FAKE_SESSION_TOKEN: &str = "fake-session-token";
pub const FAKE_REGION: &str = "us-east-1";

impl FakeUpstream {
    /// The credential set [`Passthrough::credentials`] hands out.
    pub fn credentials() -> aws_credential_types::Credentials {
        aws_credential_types::Credentials::new(
            FAKE_ACCESS_KEY,
            FAKE_SECRET_KEY,
            Some(FAKE_SESSION_TOKEN.to_owned()),
            None,
            "fake",
        )
    }

    /// The operations forwarded so far, by target.
    pub fn forwarded(&self) -> Vec<String> {
        lock(&self.forwarded).iter().map(|(t, _)| t.clone()).collect()
    }

    /// Sets what forwarded operations answer.
    pub fn answer_forwards(&self, status: u16, body: &str) {
        *lock(&self.forward_answer) = Some((status, body.to_owned()));
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FakeUpstream {
    pub fn new() -> Self {
        Self::default()
    }

    /// A small secret value, for tests that need one but no upstream.
    pub fn value_for_tests() -> Value {
        Value::from_secret(SecretFields {
            arn: Self::arn_of("test"),
            name: "test".into(),
            version_id: Some("v1".into()),
            secret_string: Some("v".into()),
            secret_binary: None,
            version_stages: vec!["AWSCURRENT".into()],
            created_date: None,
        })
    }

    pub fn arn_of(name: &str) -> String {
        Self::arn_with_suffix(name, "AbCdEf")
    }

    pub fn arn_with_suffix(name: &str, suffix: &str) -> String {
        format!("arn:aws:secretsmanager:us-east-1:123456789012:secret:{name}-{suffix}")
    }

    /// Creates a secret whose ARN ends in `suffix` (Secrets Manager's random six).
    pub fn put_secret_with_suffix(&self, name: &str, suffix: &str, value: &str) {
        lock(&self.secrets).insert(
            name.to_owned(),
            FakeSecret {
                arn: Self::arn_with_suffix(name, suffix),
                elsewhere_name: None,
                tags: Vec::new(),
                versions: vec![("v1".to_owned(), value.to_owned())],
            },
        );
    }

    /// Creates the secret or puts a new AWSCURRENT version.
    pub fn put_secret(&self, name: &str, value: &str) {
        let mut secrets = lock(&self.secrets);
        let s = secrets.entry(name.to_owned()).or_insert_with(|| FakeSecret {
            arn: Self::arn_of(name),
            elsewhere_name: None,
            tags: Vec::new(),
            versions: Vec::new(),
        });
        let version = format!("v{}", s.versions.len() + 1);
        s.versions.push((version, value.to_owned()));
    }

    /// A secret called `name` in another region or account, reachable by `arn` only
    /// (a home secret may have the same name).
    pub fn put_secret_elsewhere(&self, name: &str, arn: &str, value: &str) {
        let mut secrets = lock(&self.secrets);
        let s = secrets.entry(arn.to_owned()).or_insert_with(|| FakeSecret {
            arn: arn.to_owned(),
            elsewhere_name: Some(name.to_owned()),
            tags: Vec::new(),
            versions: Vec::new(),
        });
        let version = format!("v{}", s.versions.len() + 1);
        s.versions.push((version, value.to_owned()));
    }

    pub fn put_param(&self, name: &str, kind: &'static str, value: &str) {
        let mut params = lock(&self.params);
        let p = params.entry(name.to_owned()).or_insert_with(|| FakeParam {
            kind,
            versions: Vec::new(),
        });
        p.kind = kind;
        p.versions.push(value.to_owned());
    }

    /// Tags an existing secret.
    pub fn tag_secret(&self, name: &str, key: &str, value: &str) {
        if let Some(s) = lock(&self.secrets).get_mut(name) {
            s.tags.push((key.to_owned(), value.to_owned()));
        }
    }

    pub fn delete_secret(&self, name: &str) {
        lock(&self.secrets).remove(name);
    }

    /// The next calls fail with these kinds, in order.
    pub fn fail_next(&self, kinds: &[ErrorKind]) {
        lock(&self.failures).extend(kinds.iter().copied());
    }

    /// Every call fails with `kind` until cleared with `None`.
    pub fn fail_all(&self, kind: Option<ErrorKind>) {
        *lock(&self.fail_all) = kind;
    }

    /// The next call panics.
    pub fn panic_next(&self) {
        self.panic_next.store(true, SeqCst);
    }

    pub fn set_latency(&self, d: Duration) {
        *lock(&self.latency) = d;
    }

    pub fn calls(&self) -> usize {
        self.calls.load(SeqCst)
    }

    /// The role every call so far was made with, in order, and forgets them.
    pub fn take_roles(&self) -> Vec<Option<String>> {
        std::mem::take(&mut *lock(&self.roles))
    }

    /// The secrets tagged `key` (= `value`), matched exactly.
    fn tagged(&self, key: &str, value: Option<&str>) -> Vec<Listed> {
        let mut found: Vec<Listed> = lock(&self.secrets)
            .iter()
            .filter(|(_, s)| {
                s.tags
                    .iter()
                    .any(|(k, v)| k == key && value.is_none_or(|want| want == v))
            })
            .map(|(name, s)| Listed {
                name: name.clone(),
                arn: s.arn.clone(),
            })
            .collect();
        found.sort_by(|a, b| a.name.cmp(&b.name));
        found
    }

    /// Counts a call made `via`.
    fn count(&self, via: &Via) {
        self.calls.fetch_add(1, SeqCst);
        lock(&self.roles).push(via.scope.role().map(str::to_owned));
        if via.attempts == Attempts::Once {
            self.single_attempt_calls.fetch_add(1, SeqCst);
        }
    }

    /// Counts a call made `via`, then lets it meet the injected panic, latency and
    /// failures: the way into every [`Upstream`](super::Upstream) call.
    async fn enter(&self, via: &Via) -> Result<(), UpstreamError> {
        self.count(via);
        self.injected().await
    }

    /// [`enter`](Self::enter) for a call that asks for many values at once, counted
    /// in `batch_calls` as well.
    async fn enter_batch(&self, via: &Via) -> Result<(), UpstreamError> {
        self.count(via);
        self.batch_calls.fetch_add(1, SeqCst);
        self.injected().await
    }

    async fn injected(&self) -> Result<(), UpstreamError> {
        assert!(!self.panic_next.swap(false, SeqCst), "injected panic");
        let latency = *lock(&self.latency);
        if !latency.is_zero() {
            tokio::time::sleep(latency).await;
        }
        let injected = lock(&self.failures).pop_front().or(*lock(&self.fail_all));
        match injected {
            Some(kind) => Err(UpstreamError::new(kind, "injected")),
            None => Ok(()),
        }
    }
}
