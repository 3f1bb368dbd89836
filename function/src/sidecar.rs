//! The few lines that talk to the secrets-sidecar: one local GET with the token.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;

use crate::secret::Secret;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SidecarError {
    #[error("sidecar unreachable: {0}")]
    Unreachable(String),
    #[error("sidecar timed out")]
    Timeout,
    /// The sidecar answered with an error (its JSON `error` code).
    #[error("sidecar answered {status} {code}")]
    Refused { status: u16, code: String },
    #[error("sidecar answer not understood")]
    BadAnswer,
}

pub struct Sidecar {
    base: String,
    token: Secret,
    client: Client<HttpConnector, Empty<Bytes>>,
    timeout: Duration,
}

#[derive(Deserialize)]
struct ParameterAnswer {
    #[serde(rename = "Parameter")]
    parameter: ParameterValue,
}

#[derive(Deserialize)]
struct ParameterValue {
    #[serde(rename = "Value")]
    value: String,
}

fn enc(s: &str) -> String {
    form_urlencoded::byte_serialize(s.as_bytes()).collect()
}

impl Sidecar {
    pub fn new(port: u16, token: Secret, timeout: Duration) -> Sidecar {
        Sidecar {
            base: format!("http://127.0.0.1:{port}"),
            token,
            client: Client::builder(TokioExecutor::new()).build_http(),
            timeout,
        }
    }

    async fn get(&self, path_and_query: &str) -> Result<Bytes, SidecarError> {
        let req = Request::get(format!("{}{path_and_query}", self.base))
            .header("X-Aws-Parameters-Secrets-Token", self.token.expose())
            .body(Empty::new())
            .map_err(|_| SidecarError::BadAnswer)?;
        let call = async {
            let resp = self
                .client
                .request(req)
                .await
                .map_err(|e| SidecarError::Unreachable(e.to_string()))?;
            let status = resp.status().as_u16();
            let body = resp
                .into_body()
                .collect()
                .await
                .map_err(|e| SidecarError::Unreachable(e.to_string()))?
                .to_bytes();
            if status != 200 {
                let code = serde_json::from_slice::<serde_json::Value>(&body)
                    .ok()
                    .and_then(|v| v["error"].as_str().map(str::to_owned))
                    .unwrap_or_default();
                return Err(SidecarError::Refused { status, code });
            }
            Ok(body)
        };
        tokio::time::timeout(self.timeout, call)
            .await
            .map_err(|_| SidecarError::Timeout)?
    }

    fn refresh(refresh: bool) -> &'static str {
        if refresh {
            "&refreshNow=true"
        } else {
            ""
        }
    }

    /// An SSM parameter's value, decrypted.
    pub async fn parameter(&self, name: &str, refresh: bool) -> Result<Secret, SidecarError> {
        let body = self
            .get(&format!(
                "/systemsmanager/parameters/get?name={}&withDecryption=true{}",
                enc(name),
                Self::refresh(refresh)
            ))
            .await?;
        let answer: ParameterAnswer = serde_json::from_slice(&body).map_err(|_| SidecarError::BadAnswer)?;
        Ok(Secret::new(answer.parameter.value))
    }

    /// One field of a JSON secret (the sidecar's `jsonKey`).
    pub async fn secret_field(&self, id: &str, field: &str, refresh: bool) -> Result<Secret, SidecarError> {
        let body = self
            .get(&format!(
                "/secretsmanager/get?secretId={}&jsonKey={}{}",
                enc(id),
                enc(field),
                Self::refresh(refresh)
            ))
            .await?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| SidecarError::BadAnswer)?;
        Ok(Secret::new(text))
    }
}
