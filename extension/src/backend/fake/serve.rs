//! How the fake answers: the lookups of a secret or parameter as the services resolve
//! them, the [`Upstream`] calls on top of them (each counted, each through the injected
//! latency and failures), and the SDK route's pass-through.

use super::{lock, FakeUpstream, FAKE_REGION};
use crate::backend::{
    Batch, BoxFuture, ErrorKind, Listed, Page, ParameterFields, SecretFields, Upstream, UpstreamError, Value, Via,
};
use crate::model::{SecretRef, Selector};

impl FakeUpstream {
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

/// A batch call's answer as the services give it: each key looked up on its own,
/// and a key that fails reported beside the values rather than failing the call.
fn batch_of(keys: &[String], mut one: impl FnMut(&str) -> Result<Value, UpstreamError>) -> Batch {
    let mut batch = Batch::default();
    for key in keys {
        match one(key) {
            Ok(v) => batch.values.push(v),
            Err(e) => batch.errors.push((key.clone(), e)),
        }
    }
    batch
}

impl Upstream for FakeUpstream {
    fn get_secret<'a>(
        &'a self,
        via: &'a Via,
        id: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>> {
        Box::pin(async move {
            self.enter(via).await?;
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
            self.enter(via).await?;
            self.param(name, selector, decrypt)
        })
    }

    fn batch_get_secrets<'a>(&'a self, via: &'a Via, ids: &'a [String]) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            self.enter_batch(via).await?;
            Ok(batch_of(ids, |id| self.secret(id, &Selector::Current)))
        })
    }

    fn get_parameters<'a>(
        &'a self,
        via: &'a Via,
        names: &'a [String],
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            self.enter_batch(via).await?;
            Ok(batch_of(names, |name| self.param(name, &Selector::Current, decrypt)))
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
            self.enter_batch(via).await?;
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
            self.enter(via).await?;
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
            self.enter(via).await?;
            Ok(self.tagged(key, value))
        })
    }
}

impl crate::backend::passthrough::Passthrough for FakeUpstream {
    fn home_region(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(async { Some(FAKE_REGION.to_owned()) })
    }

    fn credentials(&self) -> BoxFuture<'_, Result<aws_credential_types::Credentials, UpstreamError>> {
        Box::pin(async { Ok(FakeUpstream::credentials()) })
    }

    fn forward<'a>(
        &'a self,
        call: crate::backend::passthrough::Forward<'a>,
    ) -> BoxFuture<'a, Result<crate::backend::passthrough::Forwarded, UpstreamError>> {
        Box::pin(async move {
            lock(&self.forwarded).push((call.target.to_owned(), call.body.to_vec()));
            let (status, body) = lock(&self.forward_answer).clone().unwrap_or((200, "{}".to_owned()));
            Ok(crate::backend::passthrough::Forwarded {
                status,
                content_type: Some("application/x-amz-json-1.1".to_owned()),
                request_id: Some("fake-request".to_owned()),
                error_type: None,
                body: bytes::Bytes::from(body),
            })
        })
    }
}
