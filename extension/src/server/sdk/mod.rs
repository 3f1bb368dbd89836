//! The AWS SDKs' own protocol as a front door (`POST /` with `X-Amz-Target`), so
//! unchanged SDK code pointed here with `AWS_ENDPOINT_URL_SECRETS_MANAGER` /
//! `AWS_ENDPOINT_URL_SSM` is served from the same cache.
//!
//! `sigv4` verifies that a request was signed with the credentials the sidecar
//! itself was given (the function's role): the SDK protocol has no token header,
//! and the signature is what proves the caller holds those credentials.

pub mod protocol;
pub mod sigv4;
