//! [`Upstream`] over the AWS SDK: Secrets Manager and SSM clients sharing one
//! trimmed SDK configuration (rustls with ring, no SSO).
//!
//! The endpoint, region and credentials come from the SDK's own environment chain,
//! so `AWS_ENDPOINT_URL[_SECRETS_MANAGER|_SSM]` points the sidecar at moto or a
//! proxy. Each service gets `PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS` permits:
//! at most that many calls are in flight at once, the rest queue. Every HTTP attempt
//! the SDK sends, retries included, is counted by API in [`CallStats`], since that is
//! what AWS bills.

use std::sync::Arc;
use std::time::Duration;

use aws_config::retry::RetryConfig;
use aws_config::timeout::TimeoutConfig;
use aws_config::{BehaviorVersion, SdkConfig};
use aws_sdk_secretsmanager as sm;
use aws_sdk_ssm as ssm;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_runtime_api::box_error::BoxError;
use aws_smithy_runtime_api::client::interceptors::context::BeforeTransmitInterceptorContextRef;
use aws_smithy_runtime_api::client::interceptors::Intercept;
use aws_smithy_runtime_api::client::orchestrator::{HttpResponse, Metadata};
use aws_smithy_runtime_api::client::result::SdkError;
use aws_smithy_runtime_api::client::runtime_components::RuntimeComponents;
use aws_smithy_types::config_bag::ConfigBag;
use aws_smithy_types::error::display::DisplayErrorContext;
use aws_smithy_types::error::metadata::ProvideErrorMetadata;
use tokio::sync::Semaphore;

use super::{
    Api, BackendSettings, Batch, BoxFuture, CallStats, ErrorKind, Page, ParameterFields, SecretFields, Upstream,
    UpstreamError, Value,
};
use crate::model::Selector;

/// SDK retries inside one operation: short, because a request may be waiting and
/// the cache's own backoff handles longer outages.
const MAX_ATTEMPTS: u32 = 3;
const INITIAL_BACKOFF: Duration = Duration::from_millis(50);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The SDK's default connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_millis(3100);
/// Without a configured timeout: longest wait for the first byte of an answer.
pub const FIRST_BYTE_TIMEOUT: Duration = Duration::from_secs(10);

pub struct AwsUpstream {
    sm: sm::Client,
    ssm: ssm::Client,
    sm_permits: Semaphore,
    ssm_permits: Semaphore,
}

/// Loads the shared SDK configuration from the environment.
pub async fn load_sdk_config() -> SdkConfig {
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .retry_config(retry_config())
        .load()
        .await
}

fn retry_config() -> RetryConfig {
    RetryConfig::standard()
        .with_max_attempts(MAX_ATTEMPTS)
        .with_initial_backoff(INITIAL_BACKOFF)
        .with_max_backoff(MAX_BACKOFF)
}

impl AwsUpstream {
    /// Clients for both services on the shared SDK configuration, counting their
    /// HTTP attempts on `calls`.
    pub fn new(sdk: &SdkConfig, settings: BackendSettings, calls: Arc<CallStats>) -> Self {
        let counter = AttemptCounter { calls };
        let timeouts = |t: Option<Duration>| match t {
            Some(t) => TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT.min(t))
                .operation_timeout(t)
                .build(),
            // "0" keeps AWS's meaning (no overall limit), but a silent upstream must not
            // hold a request forever: each attempt gets its first byte within a bound.
            None => TimeoutConfig::builder()
                .connect_timeout(CONNECT_TIMEOUT)
                .read_timeout(FIRST_BYTE_TIMEOUT)
                .build(),
        };
        let sm_config = sm::config::Builder::from(sdk)
            .timeout_config(timeouts(settings.secrets_manager_timeout))
            .interceptor(counter.clone())
            .build();
        let ssm_config = ssm::config::Builder::from(sdk)
            .timeout_config(timeouts(settings.ssm_timeout))
            .interceptor(counter)
            .build();
        let permits = settings.max_connections.max(1);
        AwsUpstream {
            sm: sm::Client::from_conf(sm_config),
            ssm: ssm::Client::from_conf(ssm_config),
            sm_permits: Semaphore::new(permits),
            ssm_permits: Semaphore::new(permits),
        }
    }
}

/// Counts each HTTP attempt by operation name.
#[derive(Clone)]
struct AttemptCounter {
    calls: Arc<CallStats>,
}

impl std::fmt::Debug for AttemptCounter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AttemptCounter")
    }
}

impl Intercept for AttemptCounter {
    fn name(&self) -> &'static str {
        "AttemptCounter"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if let Some(api) = cfg.load::<Metadata>().and_then(|meta| Api::from_name(meta.name())) {
            self.calls.record(api);
        }
        Ok(())
    }
}

/// Sorts an SDK error into transient or definitive. Transport failures are
/// described by their innermost cause ("Connection refused (os error 111)"), which
/// is what an operator needs; the full chain goes to the debug log.
fn classify<E>(err: SdkError<E, HttpResponse>) -> UpstreamError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let transport = |kind: ErrorKind, what: &str| {
        tracing::debug!(error = %DisplayErrorContext(&err), "upstream transport error");
        UpstreamError::new(kind, format!("{what}: {}", root_cause(&err)))
    };
    match &err {
        SdkError::ServiceError(ctx) => UpstreamError::from_aws_code(
            ctx.err().code(),
            Some(ctx.raw().status().as_u16()),
            ctx.err().message().unwrap_or(""),
        ),
        SdkError::TimeoutError(_) => UpstreamError::new(ErrorKind::Timeout, "upstream call timed out"),
        SdkError::DispatchFailure(d) if d.is_timeout() => transport(ErrorKind::Timeout, "upstream call timed out"),
        SdkError::DispatchFailure(_) => transport(ErrorKind::Unavailable, "cannot reach upstream"),
        SdkError::ResponseError(_) => transport(ErrorKind::Unavailable, "unreadable upstream response"),
        // Request construction failed: typically no credentials or no region.
        _ => transport(ErrorKind::AccessDenied, "cannot build the upstream request"),
    }
}

fn root_cause(err: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = err;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}

/// One of a service's call slots (`PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`).
async fn permit(slots: &Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, UpstreamError> {
    slots.acquire().await.map_err(|_| UpstreamError::aborted("closing"))
}

fn missing(what: &str) -> UpstreamError {
    UpstreamError::new(ErrorKind::Unavailable, format!("upstream response has no {what}"))
}

fn secret_value(
    arn: Option<String>,
    name: Option<String>,
    version_id: Option<String>,
    secret_string: Option<String>,
    secret_binary: Option<aws_smithy_types::Blob>,
    version_stages: Option<Vec<String>>,
    created_date: Option<aws_smithy_types::DateTime>,
) -> Result<Value, UpstreamError> {
    Ok(Value::from_secret(SecretFields {
        arn: arn.ok_or_else(|| missing("ARN"))?,
        name: name.ok_or_else(|| missing("Name"))?,
        version_id,
        secret_string,
        secret_binary: secret_binary.map(aws_smithy_types::Blob::into_inner),
        version_stages: version_stages.unwrap_or_default(),
        created_date: created_date.map(|d| d.as_secs_f64()),
    }))
}

fn parameter_value(p: ssm::types::Parameter) -> Result<Value, UpstreamError> {
    Ok(Value::from_parameter(ParameterFields {
        arn: p.arn.ok_or_else(|| missing("Parameter.ARN"))?,
        name: p.name.ok_or_else(|| missing("Parameter.Name"))?,
        kind: p
            .r#type
            .map(|t| t.as_str().to_owned())
            .unwrap_or_else(|| "String".to_owned()),
        value: p.value.ok_or_else(|| missing("Parameter.Value"))?,
        version: p.version,
        data_type: p.data_type,
        last_modified_date: p.last_modified_date.map(|d| d.as_secs_f64()),
        selector: p.selector,
        source_result: p.source_result,
    }))
}

impl Upstream for AwsUpstream {
    fn get_secret<'a>(&'a self, id: &'a str, selector: &'a Selector) -> BoxFuture<'a, Result<Value, UpstreamError>> {
        Box::pin(async move {
            let _permit = permit(&self.sm_permits).await?;
            let mut call = self.sm.get_secret_value().secret_id(id);
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
                .ssm
                .get_parameter()
                .name(full)
                .with_decryption(decrypt)
                .send()
                .await
                .map_err(classify)?;
            parameter_value(out.parameter.ok_or_else(|| missing("Parameter"))?)
        })
    }

    fn batch_get_secrets<'a>(&'a self, ids: &'a [String]) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            let _permit = permit(&self.sm_permits).await?;
            let out = self
                .sm
                .batch_get_secret_value()
                .set_secret_id_list(Some(ids.to_vec()))
                .send()
                .await
                .map_err(classify)?;
            let mut batch = Batch::default();
            for e in out.secret_values.unwrap_or_default() {
                batch.values.push(secret_value(
                    e.arn,
                    e.name,
                    e.version_id,
                    e.secret_string,
                    e.secret_binary,
                    e.version_stages,
                    e.created_date,
                )?);
            }
            for e in out.errors.unwrap_or_default() {
                let id = e.secret_id.unwrap_or_default();
                let err =
                    UpstreamError::from_aws_code(e.error_code.as_deref(), None, e.message.as_deref().unwrap_or(""));
                batch.errors.push((id, err));
            }
            Ok(batch)
        })
    }

    fn get_parameters<'a>(&'a self, names: &'a [String], decrypt: bool) -> BoxFuture<'a, Result<Batch, UpstreamError>> {
        Box::pin(async move {
            let _permit = permit(&self.ssm_permits).await?;
            let out = self
                .ssm
                .get_parameters()
                .set_names(Some(names.to_vec()))
                .with_decryption(decrypt)
                .send()
                .await
                .map_err(classify)?;
            let mut batch = Batch::default();
            for p in out.parameters.unwrap_or_default() {
                batch.values.push(parameter_value(p)?);
            }
            for name in out.invalid_parameters.unwrap_or_default() {
                let err = UpstreamError::new(ErrorKind::NotFound, format!("ParameterNotFound: {name}"));
                batch.errors.push((name, err));
            }
            Ok(batch)
        })
    }

    fn get_parameters_by_path<'a>(
        &'a self,
        path: &'a str,
        decrypt: bool,
        next_token: Option<&'a str>,
    ) -> BoxFuture<'a, Result<Page, UpstreamError>> {
        Box::pin(async move {
            let _permit = permit(&self.ssm_permits).await?;
            let out = self
                .ssm
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
}

#[cfg(test)]
mod tests;
