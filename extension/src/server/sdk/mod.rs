//! The AWS SDKs' own protocol as a front door (`POST /` with `X-Amz-Target`), so
//! unchanged SDK code pointed here with `AWS_ENDPOINT_URL_SECRETS_MANAGER` /
//! `AWS_ENDPOINT_URL_SSM` is served from the same cache.
//!
//! `sigv4` verifies that a request was signed with the credentials the sidecar
//! itself was given (the function's role): the SDK protocol has no token header,
//! and the signature is what proves the caller holds those credentials.
//!
//! Where an SDK request goes: `route` (body, signature, scope) → `served` (the
//! cache's operations, through the `lookup` both doors share) or `forwarded`
//! (everything else, re-signed and relayed); `protocol` reads requests and shapes
//! answers and errors, `reply` makes the responses, `paging` issues
//! GetParametersByPath's tokens, `keys` holds the credential sets a caller may
//! sign with, `sigv4` verifies.

pub mod forwarded;
pub mod keys;
pub mod paging;
pub mod protocol;
pub mod reply;
pub mod route;
pub mod served;
pub mod sigv4;

#[cfg(test)]
mod tests;
