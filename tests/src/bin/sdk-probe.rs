//! The Rust SDK's client for the SDK-protocol tests (`extension/tests/integration/sdk_clients.rs`).
//!
//! Ordinary `aws-config` + `aws-sdk-secretsmanager` + `aws-sdk-ssm` code with nothing
//! sidecar-specific in it: the endpoint, credentials, region and retry policy all come
//! from the environment (`AWS_ENDPOINT_URL_SECRETS_MANAGER`, `AWS_ENDPOINT_URL_SSM`,
//! `AWS_ACCESS_KEY_ID`, …), as in a function pointed at the sidecar without a code
//! change. The scenarios and the JSON they print are those of
//! `tests/fixtures/sdk/boto3_client.py` and `js_client.mjs`, so the test compares
//! SDKs with each other and with moto answering directly.
//!
//! Usage: `sdk-probe SCENARIO ARGS...`; prints one JSON line on stdout. Values are
//! printed only because the test planted them itself and compares them.

use anyhow::{anyhow, bail, Context, Result};
use aws_config::BehaviorVersion;
use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueOutput;
use aws_sdk_ssm::types::Parameter;
use aws_smithy_http_client::tls::{self, rustls_provider::CryptoMode};
use aws_smithy_types::DateTime;
use base64::engine::{general_purpose::STANDARD as BASE64, Engine};
use serde_json::{json, Value};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (scenario, args) = args
        .split_first()
        .ok_or_else(|| anyhow!("usage: sdk-probe SCENARIO ARGS..."))?;
    // The SDK's own HTTPS client, as a function built with these crates would use
    // (the workspace builds the SDK without its default client).
    let http = aws_smithy_http_client::Builder::new()
        .tls_provider(tls::Provider::Rustls(CryptoMode::Ring))
        .build_https();
    let config = aws_config::defaults(BehaviorVersion::latest())
        .http_client(http)
        .load()
        .await;
    let probe = Probe {
        sm: aws_sdk_secretsmanager::Client::new(&config),
        ssm: aws_sdk_ssm::Client::new(&config),
    };
    let out = probe.run(scenario, args).await?;
    println!("{out}");
    Ok(())
}

struct Probe {
    sm: aws_sdk_secretsmanager::Client,
    ssm: aws_sdk_ssm::Client,
}

impl Probe {
    async fn run(&self, scenario: &str, args: &[String]) -> Result<Value> {
        match (scenario, args) {
            ("get-secret-twice", [id]) => {
                let first = secret(&self.get_secret(id).await?);
                let second = secret(&self.get_secret(id).await?);
                Ok(json!({"first": first, "second": second}))
            }
            ("get-parameter-twice", [name]) => {
                let first = parameter(&self.get_parameter(name).await?);
                let second = parameter(&self.get_parameter(name).await?);
                Ok(json!({"first": first, "second": second}))
            }
            ("get-each", [id, name]) => {
                let secret = match self.get_secret(id).await {
                    Ok(out) => json!({"ok": secret(&out)}),
                    Err(e) => error_of(e, |e| e.is_resource_not_found_exception())?,
                };
                let parameter = match self.get_parameter_raw(name).await {
                    Ok(p) => json!({"ok": parameter(&p)}),
                    Err(e) => error_of(e, |e| e.is_parameter_not_found() || e.is_parameter_version_not_found())?,
                };
                Ok(json!({"secret": secret, "parameter": parameter}))
            }
            ("put-secret", [id, value]) => {
                let before = secret(&self.get_secret(id).await?);
                let put = self
                    .sm
                    .put_secret_value()
                    .secret_id(id)
                    .secret_string(value)
                    .send()
                    .await
                    .context("PutSecretValue")?;
                let after = secret(&self.get_secret(id).await?);
                Ok(json!({
                    "before": before,
                    "put": {"name": put.name(), "arn": put.arn(), "version_id": put.version_id()},
                    "after": after,
                }))
            }
            ("put-parameter", [name, value]) => {
                let before = parameter(&self.get_parameter(name).await?);
                let put = self
                    .ssm
                    .put_parameter()
                    .name(name)
                    .value(value)
                    .r#type(aws_sdk_ssm::types::ParameterType::SecureString)
                    .overwrite(true)
                    .send()
                    .await
                    .context("PutParameter")?;
                let after = parameter(&self.get_parameter(name).await?);
                Ok(json!({"before": before, "put": {"version": put.version()}, "after": after}))
            }
            ("batch-secrets", ids) => {
                let out = self
                    .sm
                    .batch_get_secret_value()
                    .set_secret_id_list(Some(ids.to_vec()))
                    .send()
                    .await
                    .context("BatchGetSecretValue")?;
                let mut values: Vec<Value> = out
                    .secret_values()
                    .iter()
                    .map(|v| {
                        json!({
                            "name": v.name(),
                            "arn": v.arn(),
                            "version_id": v.version_id(),
                            "stages": sorted(v.version_stages()),
                            "created": epoch(v.created_date()),
                            "value": v.secret_string(),
                            "binary": v.secret_binary().map(|b| BASE64.encode(b.as_ref())),
                        })
                    })
                    .collect();
                values.sort_by_key(|v| v["name"].to_string());
                let mut errors: Vec<Value> = out
                    .errors()
                    .iter()
                    .map(|e| json!({"secret_id": e.secret_id(), "code": e.error_code()}))
                    .collect();
                errors.sort_by_key(|e| e["secret_id"].to_string());
                Ok(json!({"values": values, "errors": errors}))
            }
            ("get-parameters", names) => {
                let out = self
                    .ssm
                    .get_parameters()
                    .set_names(Some(names.to_vec()))
                    .with_decryption(true)
                    .send()
                    .await
                    .context("GetParameters")?;
                let mut parameters: Vec<Value> = out.parameters().iter().map(parameter).collect();
                parameters.sort_by_key(|p| p["name"].to_string());
                Ok(json!({"parameters": parameters, "invalid": sorted(out.invalid_parameters())}))
            }
            ("by-path", [path, page_size]) => {
                let page_size: i32 = page_size.parse().context("page size")?;
                let mut result = serde_json::Map::new();
                for (key, recursive) in [("flat", false), ("recursive", true)] {
                    let mut pages = self
                        .ssm
                        .get_parameters_by_path()
                        .path(path)
                        .recursive(recursive)
                        .with_decryption(true)
                        .into_paginator()
                        .page_size(page_size)
                        .send();
                    let (mut parameters, mut page_sizes) = (Vec::new(), Vec::new());
                    while let Some(page) = pages.next().await {
                        let page = page.context("GetParametersByPath")?;
                        page_sizes.push(page.parameters().len());
                        parameters.extend(page.parameters().iter().map(parameter));
                    }
                    result.insert(
                        key.to_owned(),
                        json!({"parameters": parameters, "page_sizes": page_sizes}),
                    );
                }
                Ok(Value::Object(result))
            }
            _ => bail!("unknown scenario {scenario} with {} arguments", args.len()),
        }
    }

    async fn get_secret(
        &self,
        id: &str,
    ) -> Result<GetSecretValueOutput, SdkError<aws_sdk_secretsmanager::operation::get_secret_value::GetSecretValueError>>
    {
        self.sm.get_secret_value().secret_id(id).send().await
    }

    async fn get_parameter_raw(
        &self,
        name: &str,
    ) -> Result<Parameter, SdkError<aws_sdk_ssm::operation::get_parameter::GetParameterError>> {
        let out = self.ssm.get_parameter().name(name).with_decryption(true).send().await?;
        Ok(out.parameter.unwrap_or_else(|| Parameter::builder().build()))
    }

    async fn get_parameter(&self, name: &str) -> Result<Parameter> {
        self.get_parameter_raw(name).await.context("GetParameter")
    }
}

/// A service error as the other clients print it; any other failure (no answer,
/// an unparsable one) ends the probe with an error, as it would end a function.
fn error_of<E, R>(e: SdkError<E, R>, typed: impl Fn(&E) -> bool) -> Result<Value>
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    R: std::fmt::Debug + Send + Sync + 'static + HasStatus,
{
    match e {
        SdkError::ServiceError(se) => {
            let status = se.raw().status();
            let err = se.err();
            Ok(json!({"error": {
                "code": err.code(),
                "typed": typed(err),
                "status": status,
                "message": err.message(),
            }}))
        }
        other => Err(anyhow!(aws_smithy_types::error::display::DisplayErrorContext(other))),
    }
}

/// The HTTP status of a raw response (one trait so `error_of` serves both clients).
trait HasStatus {
    fn status(&self) -> u16;
}

impl HasStatus for aws_smithy_runtime_api::http::Response {
    fn status(&self) -> u16 {
        self.status().as_u16()
    }
}

fn secret(o: &GetSecretValueOutput) -> Value {
    json!({
        "name": o.name(),
        "arn": o.arn(),
        "version_id": o.version_id(),
        "stages": sorted(o.version_stages()),
        "created": epoch(o.created_date()),
        "value": o.secret_string(),
        "binary": o.secret_binary().map(|b| BASE64.encode(b.as_ref())),
    })
}

fn parameter(p: &Parameter) -> Value {
    json!({
        "name": p.name(),
        "type": p.r#type().map(|t| t.as_str()),
        "value": p.value(),
        "version": p.version(),
        "arn": p.arn(),
        "data_type": p.data_type(),
        "modified": epoch(p.last_modified_date()),
    })
}

fn epoch(d: Option<&DateTime>) -> Option<i64> {
    d.map(DateTime::secs)
}

fn sorted(items: &[String]) -> Vec<String> {
    let mut v = items.to_vec();
    v.sort();
    v
}
