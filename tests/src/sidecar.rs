//! The real `secrets-sidecar` binary in standalone mode, for integration tests.
//!
//! The child starts from an empty environment (plus `PATH`), so nothing of the host's
//! AWS setup leaks in: fake credentials, a region, and the endpoint the test gives.

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Result;
use tokio::process::Command;

use crate::net::{free_port, poll, HttpClient, Response};
use crate::process::Proc;

pub const TOKEN_HEADER: &str = "X-Aws-Parameters-Secrets-Token";

/// Builds the environment of a sidecar process.
pub struct SidecarBuilder {
    bin: PathBuf,
    env: Vec<(String, String)>,
    pub port: u16,
    pub token: String,
}

impl SidecarBuilder {
    pub fn new(bin: impl AsRef<Path>) -> Self {
        let port = free_port();
        let token = format!("test-token-{port}");
        SidecarBuilder {
            bin: bin.as_ref().to_path_buf(),
            env: Vec::new(),
            port,
            token: token.clone(),
        }
        .var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", &port.to_string())
        .var("AWS_REGION", "us-east-1")
        .var("AWS_ACCESS_KEY_ID", "testing")
        .var("AWS_SECRET_ACCESS_KEY", "testing")
        .var("AWS_EC2_METADATA_DISABLED", "true")
        .var("HOME", "/nonexistent")
        .var("SECRETS_SIDECAR_TOKEN", &token)
        .var("PARAMETERS_SECRETS_EXTENSION_LOG_LEVEL", "debug")
    }

    /// Sets (or replaces) a variable.
    pub fn var(mut self, key: &str, value: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    /// Uses `token` instead of the generated one.
    pub fn token(mut self, token: &str) -> Self {
        self.token = token.to_owned();
        self.var("SECRETS_SIDECAR_TOKEN", token)
    }

    /// Listens on `port` instead of the free one picked at construction.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self.var("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", &port.to_string())
    }

    pub fn unset(mut self, key: &str) -> Self {
        self.env.retain(|(k, _)| k != key);
        self
    }

    /// Points both services at `url` (moto or the fault proxy).
    pub fn endpoint(self, url: &str) -> Self {
        self.var("AWS_ENDPOINT_URL", url)
    }

    pub fn command(&self) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.env_clear();
        if let Some(path) = std::env::var_os("PATH") {
            cmd.env("PATH", path);
        }
        for (k, v) in &self.env {
            cmd.env(k, v);
        }
        cmd
    }

    /// Spawns the sidecar without waiting for it.
    pub fn spawn_raw(&self) -> Result<Proc> {
        Proc::spawn("sidecar", self.command())
    }

    /// Spawns the sidecar and waits until `/ping` reports it ready.
    pub async fn spawn(self) -> Result<Sidecar> {
        let proc = self.spawn_raw()?;
        let sidecar = Sidecar {
            proc,
            port: self.port,
            token: self.token,
            http: HttpClient::new(),
        };
        sidecar.wait_ready(Duration::from_secs(20)).await?;
        Ok(sidecar)
    }
}

pub struct Sidecar {
    pub proc: Proc,
    pub port: u16,
    pub token: String,
    pub http: HttpClient,
}

impl Sidecar {
    pub fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    pub async fn wait_ready(&self, timeout: Duration) -> Result<()> {
        let http = HttpClient::one_shot();
        let url = self.url("/ping");
        poll(timeout, "sidecar readiness", || {
            let http = http.clone();
            let url = url.clone();
            async move {
                let r = http.get(&url, &[]).await.ok()?;
                (r.status == 200 && r.json()["ready"] == true).then_some(())
            }
        })
        .await
    }

    /// GET with the right token.
    pub async fn get(&self, path: &str) -> Result<Response> {
        self.http.get(&self.url(path), &[(TOKEN_HEADER, &self.token)]).await
    }

    /// GET with the given headers only.
    pub async fn get_with(&self, path: &str, headers: &[(&str, &str)]) -> Result<Response> {
        self.http.get(&self.url(path), headers).await
    }

    /// The value of one series in `/metrics`, e.g. `secrets_sidecar_upstream_calls_total{api="GetSecretValue"}`.
    pub async fn metric(&self, series: &str) -> Result<u64> {
        let text = self.get("/metrics").await?.text();
        Ok(text
            .lines()
            .find_map(|l| l.strip_prefix(series).and_then(|v| v.trim().parse().ok()))
            .unwrap_or(0))
    }
}
