//! An in-memory [`Upstream`] for unit tests: secrets with AWSCURRENT/AWSPREVIOUS,
//! parameters with versions, injected failures and latency, and call counts.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::sync::Mutex;
use std::time::Duration;

use super::{
    Attempts, Batch, BoxFuture, ErrorKind, Listed, Page, ParameterFields, SecretFields, Upstream, UpstreamError, Value,
    Via,
};
use crate::model::{SecretRef, Selector};

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

impl super::passthrough::Passthrough for FakeUpstream {
    fn home_region(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { Some(FAKE_REGION.to_owned()) })
    }

    fn credentials(&self) -> BoxFuture<'_, Result<aws_credential_types::Credentials, UpstreamError>> {
        Box::pin(async { Ok(FakeUpstream::credentials()) })
    }

    fn forward<'a>(
        &'a self,
        call: super::passthrough::Forward<'a>,
    ) -> BoxFuture<'a, Result<super::passthrough::Forwarded, UpstreamError>> {
        Box::pin(async move {
            lock(&self.forwarded).push((call.target.to_owned(), call.body.to_vec()));
            let (status, body) = lock(&self.forward_answer).clone().unwrap_or((200, "{}".to_owned()));
            Ok(super::passthrough::Forwarded {
                status,
                content_type: Some("application/x-amz-json-1.1".to_owned()),
                request_id: Some("fake-request".to_owned()),
                error_type: None,
                body: bytes::Bytes::from(body),
            })
        })
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
        if via.attempts == Attempts::Once {
            self.single_attempt_calls.fetch_add(1, SeqCst);
        }
    }

    async fn enter(&self) -> Result<(), UpstreamError> {
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

    fn secret(&self, id: &str, selector: &Selector) -> Result<Value, UpstreamError> {
        let secrets = lock(&self.secrets);
        // As Secrets Manager resolves an id: a full ARN, then a name, then a partial
        // ARN (the ARN without its `-XXXXXX` suffix).
        let (name, s) = secrets
            .iter()
            .find(|(_, s)| s.arn == id)
            .or_else(|| {
                secrets
                    .iter()
                    .find(|(name, s)| *name == id && s.elsewhere_name.is_none())
            })
            .or_else(|| {
                secrets.iter().find(|(_, s)| {
                    id.starts_with("arn:")
                        && s.arn
                            .strip_prefix(id)
                            .is_some_and(|rest| rest.len() == 7 && rest.starts_with('-'))
                })
            })
            .ok_or_else(|| UpstreamError::new(ErrorKind::NotFound, "ResourceNotFoundException"))?;
        let n = s.versions.len();
        let index = match selector {
            Selector::Current => n.checked_sub(1),
            Selector::VersionStage(st) if st == "AWSPREVIOUS" => n.checked_sub(2),
            Selector::VersionId(v) => s.versions.iter().position(|(id, _)| id == v),
            _ => None,
        }
        .ok_or_else(|| UpstreamError::new(ErrorKind::NotFound, "ResourceNotFoundException: version"))?;
        let (version, value) = &s.versions[index];
        let stage = if index + 1 == n { "AWSCURRENT" } else { "AWSPREVIOUS" };
        Ok(Value::from_secret(SecretFields {
            arn: s.arn.clone(),
            name: s.elsewhere_name.clone().unwrap_or_else(|| name.clone()),
            version_id: Some(version.clone()),
            secret_string: Some(value.clone()),
            secret_binary: None,
            version_stages: vec![stage.to_owned()],
            created_date: Some(1_700_000_000.0),
        }))
    }

    fn param(&self, name: &str, selector: &Selector, decrypt: bool) -> Result<Value, UpstreamError> {
        let params = lock(&self.params);
        let p = params
            .get(name)
            .ok_or_else(|| UpstreamError::new(ErrorKind::NotFound, "ParameterNotFound"))?;
        let version = match selector {
            Selector::Version(v) => usize::try_from(*v).unwrap_or(usize::MAX),
            _ => p.versions.len(),
        };
        let value = p
            .versions
            .get(version.wrapping_sub(1))
            .ok_or_else(|| UpstreamError::new(ErrorKind::NotFound, "ParameterVersionNotFound"))?;
        let shown = if p.kind == "SecureString" && !decrypt {
            format!("kms:alias/aws/ssm:{value}")
        } else {
            value.clone()
        };
        Ok(Value::from_parameter(ParameterFields {
            arn: format!("arn:aws:ssm:us-east-1:123456789012:parameter{}", name),
            name: name.to_owned(),
            kind: p.kind.to_owned(),
            value: shown,
            version: i64::try_from(version).unwrap_or(i64::MAX),
            data_type: Some("text".into()),
            last_modified_date: None,
            selector: selector.ssm_suffix(),
            source_result: None,
        }))
    }
}

impl Upstream for FakeUpstream {
    fn get_secret<'a>(
        &'a self,
        via: &'a Via,
        id: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.enter().await?;
            self.secret(id, selector)
        })
    }

    fn get_parameter<'a>(
        &'a self,
        via: &'a Via,
        name: &'a str,
        selector: &'a Selector,
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.enter().await?;
            self.param(name, selector, decrypt)
        })
    }

    fn batch_get_secrets<'a>(&'a self, via: &'a Via, ids: &'a [String]) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.batch_calls.fetch_add(1, SeqCst);
            self.enter().await?;
            let mut batch = Batch::default();
            for id in ids {
                match self.secret(id, &Selector::Current) {
                    Ok(v) => batch.values.push(v),
                    Err(e) => batch.errors.push((id.clone(), e)),
                }
            }
            Ok(batch)
        })
    }

    fn get_parameters<'a>(
        &'a self,
        via: &'a Via,
        names: &'a [String],
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.batch_calls.fetch_add(1, SeqCst);
            self.enter().await?;
            let mut batch = Batch::default();
            for name in names {
                match self.param(name, &Selector::Current, decrypt) {
                    Ok(v) => batch.values.push(v),
                    Err(e) => batch.errors.push((name.clone(), e)),
                }
            }
            Ok(batch)
        })
    }

    fn get_parameters_by_path<'a>(
        &'a self,
        via: &'a Via,
        path: &'a str,
        decrypt: bool,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.batch_calls.fetch_add(1, SeqCst);
            self.enter().await?;
            let mut names: Vec<String> = lock(&self.params)
                .keys()
                .filter(|n| n.starts_with(path))
                .cloned()
                .collect();
            names.sort();
            let start: usize = next_token.and_then(|t| t.parse().ok()).unwrap_or(0);
            let end = (start + 2).min(names.len());
            let mut page = Page::default();
            for name in &names[start.min(end)..end] {
                page.values.push(self.param(name, &Selector::Current, decrypt)?);
            }
            page.next_token = (end < names.len()).then(|| end.to_string());
            Ok(page)
        })
    }

    fn exists<'a>(&'a self, via: &'a Via, r: &'a SecretRef) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.enter().await?;
            let found = match r {
                SecretRef::Secret(id) => lock(&self.secrets).iter().any(|(n, s)| n == id || s.arn == *id),
                SecretRef::Parameter(name) => lock(&self.params).contains_key(name),
                SecretRef::Path(prefix) => lock(&self.params).keys().any(|n| n.starts_with(prefix.as_str())),
                SecretRef::Tag(_) => {
                    let (key, value) = r.tag().unwrap_or_default();
                    !self.tagged(key, value).is_empty()
                }
            };
            if found {
                Ok(())
            } else {
                Err(UpstreamError::new(ErrorKind::NotFound, format!("not found: {r}")))
            }
        })
    }

    fn list_secrets_by_tag<'a>(
        &'a self,
        via: &'a Via,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, UpstreamError>> {
        Box::pin(async move {
            self.count(via);
            self.enter().await?;
            Ok(self.tagged(key, value))
        })
    }
}
