//! What the SDK route needs from the backend besides values: the sidecar's own
//! credentials (an SDK request is served only when signed with them), its home
//! region, and a way to send any other operation to the real service.
//!
//! A forwarded call is the caller's request body, re-signed for the real endpoint
//! with the same credentials the caller proved it holds, and its answer comes back
//! unchanged: status, AWS's error headers and body.

use aws_credential_types::Credentials;
use bytes::Bytes;

use super::{BoxFuture, UpstreamError};

/// One operation to forward, as the caller sent it.
pub struct Forward<'a> {
    /// The SigV4 signing name: `secretsmanager` or `ssm`.
    pub service: &'static str,
    /// The region the caller signed for.
    pub region: &'a str,
    /// `X-Amz-Target`, e.g. `secretsmanager.PutSecretValue`.
    pub target: &'a str,
    pub body: &'a [u8],
    /// The credential set the caller's signature was verified with.
    pub credentials: &'a Credentials,
}

/// The real service's answer, unchanged.
pub struct Forwarded {
    pub status: u16,
    pub content_type: Option<String>,
    pub request_id: Option<String>,
    pub error_type: Option<String>,
    pub body: Bytes,
}

pub trait Passthrough: Send + Sync + 'static {
    /// The region the sidecar's own clients use.
    fn home_region(&self) -> BoxFuture<'_, Option<String>>;

    /// The credentials the sidecar's provider hands out now (the function's role's).
    fn credentials(&self) -> BoxFuture<'_, Result<Credentials, UpstreamError>>;

    /// Sends `call` to the real service and returns its answer as it came.
    fn forward<'a>(&'a self, call: Forward<'a>) -> BoxFuture<'a, Result<Forwarded, UpstreamError>>;
}
