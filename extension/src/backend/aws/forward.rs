//! [`Passthrough`] over plain HTTP: the SDK route's operations the cache does not
//! serve, re-signed with the caller's (the sidecar's own) credentials and sent to
//! the real endpoint, their answers returned as they came.
//!
//! The SDK clients cannot send an arbitrary operation, so this is a small hyper
//! client of its own (rustls with ring and the system's roots, like the SDK's),
//! built on the first forwarded call. The endpoint is the one the sidecar's own
//! clients use (`SECRETS_SIDECAR_UPSTREAM_ENDPOINT[_SERVICE]`, never the sidecar
//! itself, see `endpoints`), else AWS's regional endpoint of the region the caller
//! signed for. The signature is made by `aws-sigv4`, like every SDK's.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use aws_credential_types::provider::ProvideCredentials;
use aws_credential_types::Credentials;
use aws_sigv4::http_request::{
    sign, PayloadChecksumKind, SignableBody, SignableRequest, SignatureLocation, SigningSettings,
};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;

use super::{AwsUpstream, Source};
use crate::backend::passthrough::{Forward, Forwarded, Passthrough};
use crate::backend::{BoxFuture, ErrorKind, UpstreamError};
use crate::model::is_region;

pub(super) type HttpClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// Longest a forwarded operation may take, answer included.
const FORWARD_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest answer relayed (a BatchGetSecretValue of 20 secrets of 64 KiB is ~1.3 MiB).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;
const JSON_1_1: &str = "application/x-amz-json-1.1";

fn http_client() -> Result<HttpClient, UpstreamError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let https = hyper_rustls::HttpsConnectorBuilder::new()
        .with_provider_and_native_roots(provider)
        .map_err(|e| UpstreamError::new(ErrorKind::Unavailable, format!("TLS set-up failed: {e}")))?
        .https_or_http()
        .enable_http1()
        .build();
    Ok(Client::builder(TokioExecutor::new())
        .pool_idle_timeout(Duration::from_secs(60))
        .build(https))
}

/// AWS's regional endpoint of `service` (`secretsmanager`, `ssm`).
fn aws_endpoint(service: &str, region: &str) -> String {
    let domain = if region.starts_with("cn-") {
        "amazonaws.com.cn"
    } else {
        "amazonaws.com"
    };
    format!("https://{service}.{region}.{domain}")
}

impl AwsUpstream {
    /// Where `service` calls go: the configured endpoint, else AWS's in `region`.
    fn endpoint(&self, service: &str, region: &str) -> String {
        let configured = match (&self.settings.endpoints, service) {
            (Some(e), "secretsmanager") => e.secrets_manager.clone(),
            (Some(e), _) => e.ssm.clone(),
            (None, _) => match &self.source {
                Source::Given(sdk) => sdk.endpoint_url().map(str::to_owned),
                Source::Environment => None,
            },
        };
        configured.unwrap_or_else(|| aws_endpoint(service, region))
    }

    /// The forwarding client, built on first use and dropped by `reset` with the
    /// SDK clients (a restored SnapStart clone must not reuse its connections).
    fn forwarder(&self) -> Result<HttpClient, UpstreamError> {
        let mut held = super::lock(&self.forwarder);
        if let Some(c) = &*held {
            return Ok(c.clone());
        }
        let client = http_client()?;
        *held = Some(client.clone());
        Ok(client)
    }

    async fn send(&self, call: Forward<'_>) -> Result<Forwarded, UpstreamError> {
        if !is_region(call.region) {
            return Err(UpstreamError::new(
                ErrorKind::Invalid,
                format!("'{}' is not an AWS region", call.region),
            ));
        }
        let base = self.endpoint(call.service, call.region);
        let uri: http::Uri = format!("{}/", base.trim_end_matches('/'))
            .parse()
            .map_err(|_| UpstreamError::new(ErrorKind::Invalid, format!("endpoint '{base}' is not a URL")))?;
        let host = uri
            .authority()
            .ok_or_else(|| UpstreamError::new(ErrorKind::Invalid, format!("endpoint '{base}' has no host")))?
            .to_string();
        let mut request = http::Request::post(uri.clone())
            .header(http::header::HOST, &host)
            .header(http::header::CONTENT_TYPE, JSON_1_1)
            .header("x-amz-target", call.target)
            .body(Full::new(Bytes::copy_from_slice(call.body)))
            .map_err(|e| UpstreamError::new(ErrorKind::Invalid, format!("request: {e}")))?;
        sign_request(&mut request, &uri, &host, &call)?;
        let client = self.forwarder()?;
        let exchange = async {
            let response = client
                .request(request)
                .await
                .map_err(|e| UpstreamError::new(ErrorKind::Unavailable, format!("{}: {e}", call.target)))?;
            let (parts, body) = response.into_parts();
            let body = Limited::new(body, MAX_ANSWER_BYTES)
                .collect()
                .await
                .map_err(|e| UpstreamError::new(ErrorKind::Unavailable, format!("{}: answer: {e}", call.target)))?
                .to_bytes();
            let header = |name: &str| parts.headers.get(name).and_then(|v| v.to_str().ok()).map(str::to_owned);
            Ok(Forwarded {
                status: parts.status.as_u16(),
                content_type: header("content-type"),
                request_id: header("x-amzn-requestid"),
                error_type: header("x-amzn-errortype"),
                body,
            })
        };
        match tokio::time::timeout(FORWARD_TIMEOUT, exchange).await {
            Ok(result) => result,
            Err(_) => Err(UpstreamError::new(
                ErrorKind::Timeout,
                format!("{}: no answer within {FORWARD_TIMEOUT:?}", call.target),
            )),
        }
    }
}

/// Signs the request as an SDK would: host, content type and target signed, the
/// date and session token added, the payload hashed.
fn sign_request(
    request: &mut http::Request<Full<Bytes>>,
    uri: &http::Uri,
    host: &str,
    call: &Forward<'_>,
) -> Result<(), UpstreamError> {
    let failed = |what: &str| UpstreamError::new(ErrorKind::Invalid, format!("signing the forwarded call: {what}"));
    let identity: Identity = call.credentials.clone().into();
    let mut settings = SigningSettings::default();
    settings.signature_location = SignatureLocation::Headers;
    settings.payload_checksum_kind = PayloadChecksumKind::NoHeader;
    let params = v4::SigningParams::builder()
        .identity(&identity)
        .region(call.region)
        .name(call.service)
        .time(SystemTime::now())
        .settings(settings)
        .build()
        .map_err(|_| failed("parameters"))?
        .into();
    let headers = [
        ("content-type", JSON_1_1),
        ("host", host),
        ("x-amz-target", call.target),
    ];
    let signable = SignableRequest::new(
        "POST",
        uri.to_string(),
        headers.into_iter(),
        SignableBody::Bytes(call.body),
    )
    .map_err(|_| failed("request"))?;
    let (instructions, _) = sign(signable, &params).map_err(|_| failed("signature"))?.into_parts();
    instructions.apply_to_request_http1x(request);
    Ok(())
}

impl Passthrough for AwsUpstream {
    fn home_region(&self) -> BoxFuture<'_, Option<String>> {
        Box::pin(AwsUpstream::home_region(self))
    }

    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, UpstreamError>> {
        Box::pin(async move {
            let pool = self.pool().await;
            let provider = pool
                .credentials_provider()
                .ok_or_else(|| UpstreamError::new(ErrorKind::AccessDenied, "the sidecar has no AWS credentials"))?;
            provider
                .provide_credentials()
                .await
                .map_err(|e| UpstreamError::new(ErrorKind::Unavailable, format!("loading credentials: {e}")))
        })
    }

    fn forward<'a>(&'a self, call: Forward<'a>) -> BoxFuture<'a, Result<Forwarded, UpstreamError>> {
        Box::pin(self.send(call))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aws_endpoints_follow_the_partition() {
        assert_eq!(
            aws_endpoint("secretsmanager", "eu-west-1"),
            "https://secretsmanager.eu-west-1.amazonaws.com"
        );
        assert_eq!(
            aws_endpoint("ssm", "cn-north-1"),
            "https://ssm.cn-north-1.amazonaws.com.cn"
        );
    }
}
