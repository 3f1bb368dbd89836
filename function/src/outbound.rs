//! Outbound HTTP(S) to the providers: rustls with ring and bundled web PKI roots
//! (no dependency on the image's CA store), plain HTTP for local fakes, a timeout.
//!
//! Provider URLs carry keys, so they are never logged and errors never include them.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_rustls::{HttpsConnector, HttpsConnectorBuilder};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CallError {
    #[error("timed out")]
    Timeout,
    /// Could not connect or the connection failed; the text has no URL in it.
    #[error("{0}")]
    Transport(String),
}

pub struct Outbound {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
}

impl Outbound {
    pub fn new(timeout: Duration) -> Result<Outbound, String> {
        let https = HttpsConnectorBuilder::new()
            .with_provider_and_webpki_roots(rustls::crypto::ring::default_provider())
            .map_err(|e| format!("TLS setup failed: {e}"))?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(Outbound {
            client: Client::builder(TokioExecutor::new()).build(https),
            timeout,
        })
    }

    /// GETs `url` (which may hold a key), returning the status and body.
    pub async fn get(&self, url: &Secret) -> Result<(u16, Bytes), CallError> {
        let uri: http::Uri = url
            .expose()
            .parse()
            .map_err(|_| CallError::Transport("invalid provider URL".into()))?;
        let call = async {
            let resp = self
                .client
                .get(uri)
                .await
                .map_err(|e| CallError::Transport(describe(&e)))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| CallError::Transport(e.to_string()))?
                .to_bytes();
            Ok((status, body))
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| CallError::Timeout)?
    }
}

/// The innermost cause of a client error (connection refused, DNS failure, TLS).
fn describe(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    cause.to_string()
}
