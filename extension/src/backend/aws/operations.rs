//! The operations of [`Upstream`] as AWS SDK calls, and their answers as [`Value`]s.

use aws_sdk_ssm as ssm;

use super::batches::{by_region, merge};
use super::classify::classify;
use super::clients::Clients;
use super::shapes::{missing, parameter_value, permit, secret_value};
use super::AwsUpstream;
use crate::backend::{Batch, BoxFuture, ErrorKind, Listed, Page, Upstream, UpstreamError, Value, Via};
use crate::model::{SecretRef, Selector};

impl Upstream for AwsUpstream {
    fn get_secret<'a>(
        &'a self,
        via: &'a Via,
        id: &'a str,
        selector: &'a Selector,
    ) -> BoxFuture<'a, Result<Value, UpstreamError>> {
        Box::pin(async move {
            let _permit = permit(&self.sm_permits).await?;
            let clients = self.clients_for(via, Some(id)).await?;
            let mut call = clients.sm(via.attempts).get_secret_value().secret_id(id);
            call = match selector {
                Selector::VersionId(v) => call.version_id(v),
                Selector::VersionStage(s) => call.version_stage(s),
                _ => call,
            };
            let out = call.send().await.map_err(classify)?;
            secret_value(
                out.arn,
                out.name,
                out.version_id,
                out.secret_string,
                out.secret_binary,
                out.version_stages,
                out.created_date,
            )
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
            let _permit = permit(&self.ssm_permits).await?;
            let full = match selector.ssm_suffix() {
                Some(suffix) => format!("{name}{suffix}"),
                None => name.to_owned(),
            };
            let out = self
                .clients_for(via, Some(name))
                .await?
                .ssm(via.attempts)
                .get_parameter()
                .name(full)
                .with_decryption(decrypt)
                .send()
                .await
                .map_err(classify)?;
            parameter_value(out.parameter.ok_or_else(|| missing("Parameter"))?)
        })
    }

    fn batch_get_secrets<'a>(&'a self, via: &'a Via, ids: &'a [String]) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            let home = self.home_region().await;
            let mut parts = Vec::new();
            for group in by_region(ids, home.as_deref()) {
                let result = self.batch_get_secrets_in(via, &group).await;
                parts.push((group, result));
            }
            merge(parts)
        })
    }

    fn get_parameters<'a>(
        &'a self,
        via: &'a Via,
        names: &'a [String],
        decrypt: bool,
    ) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            let home = self.home_region().await;
            let mut parts = Vec::new();
            for group in by_region(names, home.as_deref()) {
                let result = self.get_parameters_in(via, &group, decrypt).await;
                parts.push((group, result));
            }
            merge(parts)
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
            let _permit = permit(&self.ssm_permits).await?;
            let out = self
                .clients_for(via, None)
                .await?
                .ssm(via.attempts)
                .get_parameters_by_path()
                .path(path)
                .recursive(true)
                .with_decryption(decrypt)
                .max_results(10)
                .set_next_token(next_token.map(str::to_owned))
                .send()
                .await
                .map_err(classify)?;
            let mut page = Page {
                values: Vec::new(),
                next_token: out.next_token.filter(|t| !t.is_empty()),
            };
            for p in out.parameters.unwrap_or_default() {
                page.values.push(parameter_value(p)?);
            }
            Ok(page)
        })
    }

    fn exists<'a>(&'a self, via: &'a Via, r: &'a SecretRef) -> BoxFuture<'a, Result<(), UpstreamError>> {
        Box::pin(async move {
            match r {
                SecretRef::Secret(id) => {
                    let _permit = permit(&self.sm_permits).await?;
                    let clients = self.clients_for(via, Some(id)).await?;
                    clients
                        .sm(via.attempts)
                        .describe_secret()
                        .secret_id(id)
                        .send()
                        .await
                        .map_err(classify)?;
                    Ok(())
                }
                SecretRef::Parameter(id) => {
                    let name = parameter_name(id);
                    let clients = self.clients_for(via, Some(id)).await?;
                    self.any_parameter(
                        &clients,
                        via,
                        "Name",
                        "Equals",
                        name,
                        &format!("ParameterNotFound: {name}"),
                    )
                    .await
                }
                SecretRef::Tag(_) => {
                    let (key, value) = r.tag().unwrap_or_default();
                    let found = self.list_secrets_by_tag(via, key, value).await?;
                    if found.is_empty() {
                        return Err(UpstreamError::new(
                            ErrorKind::NotFound,
                            format!("no secret carries {r}"),
                        ));
                    }
                    Ok(())
                }
                SecretRef::Path(prefix) => {
                    // The Path filter takes the path without its trailing slash.
                    let path = match prefix.trim_end_matches('/') {
                        "" => "/",
                        p => p,
                    };
                    let clients = self.clients_for(via, None).await?;
                    self.any_parameter(
                        &clients,
                        via,
                        "Path",
                        "Recursive",
                        path,
                        &format!("no parameters under {prefix}"),
                    )
                    .await
                }
            }
        })
    }

    fn list_secrets_by_tag<'a>(
        &'a self,
        via: &'a Via,
        key: &'a str,
        value: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Vec<Listed>, UpstreamError>> {
        Box::pin(self.list_tagged(via, key, value))
    }
}

/// ListSecrets pages read at most for one tag (100 secrets a page).
const MAX_LIST_PAGES: usize = 100;

impl AwsUpstream {
    /// ListSecrets narrowed by tag-key and tag-value filters, which match prefixes and
    /// match keys and values independently (a secret tagged `team=x` and `env=weather`
    /// passes `team` + `weather`): the tags each entry returns are matched exactly here.
    pub(super) async fn list_tagged(
        &self,
        via: &Via,
        key: &str,
        value: Option<&str>,
    ) -> Result<Vec<Listed>, UpstreamError> {
        use aws_sdk_secretsmanager::types::{Filter, FilterNameStringType};
        let mut filters = vec![Filter::builder().key(FilterNameStringType::TagKey).values(key).build()];
        if let Some(v) = value.filter(|v| !v.is_empty()) {
            filters.push(Filter::builder().key(FilterNameStringType::TagValue).values(v).build());
        }
        let mut found = Vec::new();
        let mut token: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let out = {
                let _permit = permit(&self.sm_permits).await?;
                self.clients_for(via, None)
                    .await?
                    .sm(via.attempts)
                    .list_secrets()
                    .set_filters(Some(filters.clone()))
                    .max_results(100)
                    .set_next_token(token.take())
                    .send()
                    .await
                    .map_err(classify)?
            };
            for entry in out.secret_list.unwrap_or_default() {
                let tagged = entry.tags().iter().any(|t| {
                    t.key.as_deref() == Some(key) && value.is_none_or(|v| t.value.as_deref().unwrap_or("") == v)
                });
                if let (true, Some(name), Some(arn)) = (tagged, entry.name, entry.arn) {
                    found.push(Listed { name, arn });
                }
            }
            match out.next_token.filter(|t| !t.is_empty()) {
                Some(t) => token = Some(t),
                None => break,
            }
        }
        Ok(found)
    }

    /// DescribeParameters with one filter: whether anything matches (metadata only).
    async fn any_parameter(
        &self,
        clients: &Clients,
        via: &Via,
        key: &str,
        option: &str,
        value: &str,
        missing: &str,
    ) -> Result<(), UpstreamError> {
        let filter = ssm::types::ParameterStringFilter::builder()
            .key(key)
            .option(option)
            .values(value)
            .build()
            .map_err(|e| UpstreamError::new(ErrorKind::Invalid, e.to_string()))?;
        let _permit = permit(&self.ssm_permits).await?;
        let out = clients
            .ssm(via.attempts)
            .describe_parameters()
            .parameter_filters(filter)
            .max_results(1)
            .send()
            .await
            .map_err(classify)?;
        if out.parameters.is_some_and(|p| !p.is_empty()) {
            Ok(())
        } else {
            Err(UpstreamError::new(ErrorKind::NotFound, missing))
        }
    }
}

/// The name a parameter ARN carries (`arn:…:parameter/a/b` → `/a/b`; DescribeParameters
/// filters by name, not by ARN); a name is returned as it is.
fn parameter_name(id: &str) -> &str {
    if !id.starts_with("arn:") {
        return id;
    }
    match id.splitn(6, ':').nth(5).and_then(|r| r.strip_prefix("parameter")) {
        Some(rest) if rest.starts_with("/") && rest[1..].contains('/') => rest,
        Some(rest) => rest.strip_prefix('/').unwrap_or(rest),
        None => id,
    }
}
