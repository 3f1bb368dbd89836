//! The SDK's answers as the sidecar's [`Value`]s, shared by the single calls
//! (`operations`) and the batch calls (`batches`): a field AWS always sends but the
//! SDK types as optional is an `Unavailable` error when missing, not a panic. And
//! the call slot every one of them takes first.

use aws_sdk_ssm as ssm;
use tokio::sync::Semaphore;

use crate::backend::{ErrorKind, ParameterFields, SecretFields, UpstreamError, Value};

/// One of a service's call slots (`PARAMETERS_SECRETS_EXTENSION_MAX_CONNECTIONS`).
pub(super) async fn permit(slots: &Semaphore) -> Result<tokio::sync::SemaphorePermit<'_>, UpstreamError> {
    slots.acquire().await.map_err(|_| UpstreamError::aborted("closing"))
}

pub(super) fn missing(what: &str) -> UpstreamError {
    UpstreamError::new(ErrorKind::Unavailable, format!("upstream response has no {what}"))
}

pub(super) fn secret_value(
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

pub(super) fn parameter_value(p: ssm::types::Parameter) -> Result<Value, UpstreamError> {
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
