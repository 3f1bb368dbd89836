//! `POST /`: one SDK request, from its body to its answer.
//!
//! The order matters: the target is read first (an unknown one costs nothing), the
//! body is collected within [`MAX_BODY`], the signature is verified against the
//! sidecar's own credentials (nothing goes upstream for a request that fails it),
//! the region of the signature picks the scope (the caller's SDK may be set to
//! another region than the sidecar), then the cache serves the operations it can
//! (`served`) and everything else goes to the real service (`forwarded`).

use std::time::SystemTime;

use bytes::Bytes;
use http::{HeaderMap, Response};
use http_body_util::{BodyExt, Limited};
use tracing::{debug, warn};

use super::forwarded;
use super::protocol::{self, Request, SdkError, Target};
use super::reply;
use super::served;
use super::sigv4::{self, SigError};
use crate::metrics::Handled;
use crate::model::Scope;
use crate::server::answer::Body;
use crate::server::app::App;
use zeroize::Zeroizing;

/// Largest request body accepted (a PutSecretValue of 64 KiB, base64-encoded, fits many times).
pub const MAX_BODY: usize = 1024 * 1024;

/// Answers one `POST /`.
pub async fn handle<B>(app: &App, headers: &HeaderMap, path_and_query: &str, body: B) -> Response<Body>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let target_header = headers.get("x-amz-target").and_then(|v| v.to_str().ok());
    let target = match target_header.map(Target::parse) {
        Some(Ok(t)) => t,
        Some(Err(e)) => return reply::error(&e),
        None => return reply::error(&SdkError::validation("the X-Amz-Target header is required")),
    };
    let (handled, resp) = match answer(app, &target, headers, path_and_query, body).await {
        Ok(done) => done,
        Err(e) if e.status == 403 => (Handled::Refused, reply::error(&e)),
        Err(e) => (Handled::Error, reply::error(&e)),
    };
    app.metrics.sdk(target.operation_name(), handled);
    resp
}

async fn answer<B>(
    app: &App,
    target: &Target,
    headers: &HeaderMap,
    path_and_query: &str,
    body: B,
) -> Result<(Handled, Response<Body>), SdkError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let Some(aws) = app.passthrough() else {
        return Err(SdkError::unauthenticated(
            "UnrecognizedClientException",
            "the SDK protocol is not available in this configuration".to_owned(),
        ));
    };
    let body = collect(body).await?;
    let service = target.service.signing_name();
    let now = SystemTime::now();
    let known = app.sdk_keys.known(aws.as_ref(), now).await.map_err(|e| {
        SdkError::unauthenticated(
            "UnrecognizedClientException",
            format!("no credentials to verify with: {}", e.detail),
        )
    })?;
    let verify = |known: &[aws_credential_types::Credentials]| {
        sigv4::verify("POST", path_and_query, headers, &body, service, known, now)
    };
    let (verified, known) = match verify(&known) {
        Err(SigError::UnknownAccessKey(_)) => {
            let known = app.sdk_keys.refetch(aws.as_ref(), now).await.unwrap_or_default();
            (verify(&known), known)
        }
        other => (other, known),
    };
    let verified = match verified {
        Ok(v) => v,
        Err(e) => {
            app.metrics.auth_failure();
            warn!(target = target.operation_name(), reason = %e, "SDK request refused");
            return Err(refusal(&e));
        }
    };
    let credentials = known
        .iter()
        .find(|c| c.access_key_id() == verified.access_key_id)
        .cloned();
    let home = aws.home_region().await;
    let scope = if home.as_deref() == Some(verified.region.as_str()) {
        Scope::HOME
    } else {
        Scope::new(None, Some(&verified.region), None)
    };
    match protocol::parse_request(&target.operation, &body)? {
        Request::PassThrough => {
            let Some(credentials) = credentials else {
                return Err(refusal(&SigError::UnknownAccessKey(verified.access_key_id)));
            };
            let call = forwarded::Call {
                target,
                region: &verified.region,
                scope: &scope,
                body: &body,
                credentials: &credentials,
            };
            let resp = forwarded::answer(app, aws.as_ref(), call).await?;
            Ok((Handled::Forward, resp))
        }
        request => {
            debug!(target = target.operation_name(), "served from the cache");
            let resp = served::answer(app, target.service, &scope, request).await?;
            Ok((Handled::Cache, resp))
        }
    }
}

/// The body, within [`MAX_BODY`], into a buffer zeroized when dropped (a write
/// carries a value).
async fn collect<B>(body: B) -> Result<Zeroizing<Vec<u8>>, SdkError>
where
    B: hyper::body::Body<Data = Bytes>,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let collected = Limited::new(body, MAX_BODY).collect().await.map_err(|e| {
        SdkError::validation(format!(
            "the request body could not be read (at most {MAX_BODY} bytes): {e}"
        ))
    })?;
    Ok(Zeroizing::new(collected.to_bytes().to_vec()))
}

/// Why a signature was refused, as AWS names it.
pub fn refusal(e: &SigError) -> SdkError {
    let type_name = match e {
        SigError::Missing => "MissingAuthenticationTokenException",
        SigError::Malformed(_) => "IncompleteSignatureException",
        SigError::UnknownAccessKey(_) | SigError::TokenMismatch => "UnrecognizedClientException",
        SigError::WrongService { .. } | SigError::Skewed | SigError::BadSignature => "InvalidSignatureException",
    };
    let status = if matches!(e, SigError::Malformed(_)) { 400 } else { 403 };
    SdkError {
        type_name,
        message: e.to_string(),
        status,
    }
}
