//! The article's second approach as a running function: a Node.js handler
//! (`tests/fixtures/sdk/article.js`) that calls `GetSecretValue` with the AWS SDK for
//! JavaScript v3 on every invoke, in the emulator, with or without the real
//! `secrets-sidecar` in its layer. The handler's code never changes; only the
//! function's `AWS_ENDPOINT_URL_SECRETS_MANAGER` decides where its calls go: to the
//! sidecar on `http://localhost:<port>` ([`Route::Sidecar`]) or straight to "AWS"
//! ([`Route::Direct`]), which here is moto behind the fault proxy. Tests, the demo and
//! anyone comparing the two routes start it the same way.
//!
//! The function answers with the SHA-256 digest of the secret and the SDK call's
//! duration, so callers compare digests ([`sha256_hex`]) and never see a value.
//! [`Options`] pick the platform it runs on (on demand by default) and, for the
//! credential-rotation test, another handler (`rotation.js`: the article's client and
//! one built per invoke) and an endpoint whose credentials the test rotates.
//! The SDK comes from the repository's `node_modules` through `NODE_PATH`, as Lambda's
//! Node.js runtimes find their bundled SDK through theirs ([`ensure_node_modules`]
//! installs it on first use).

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};

use bytes::Bytes;

use crate::emulator::{Emulator, FunctionConfig, Invoked, Mode, Outcome};
use crate::layer::Layer;
use crate::venv::repo_root;

/// Where the function's SDK calls go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER=http://localhost:<sidecar port>`, the sidecar
    /// in the layer.
    Sidecar,
    /// `AWS_ENDPOINT_URL_SECRETS_MANAGER=<upstream>`, no layer: the function as it runs
    /// today, every invoke a call to AWS.
    Direct,
}

impl std::fmt::Display for Route {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.pad(match self {
            Route::Sidecar => "through the sidecar",
            Route::Direct => "straight to AWS",
        })
    }
}

/// How the function is set up beyond its route.
#[derive(Clone, Debug)]
pub struct Options {
    /// The handler, a file of `tests/fixtures/sdk` (installed as `index.js`).
    pub handler: &'static str,
    /// The platform (`AWS_LAMBDA_INITIALIZATION_TYPE` and its rules).
    pub mode: Mode,
    /// SnapStart: let the test rotate the container credentials
    /// ([`Emulator::rotate_credentials`]).
    pub rotating_credentials: bool,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            handler: "article.js",
            mode: Mode::OnDemand,
            rotating_credentials: false,
        }
    }
}

/// One invoke's answer.
#[derive(Clone, Debug)]
pub struct Call {
    /// SHA-256 (hex) of the `SecretString` the SDK returned.
    pub sha256: String,
    /// How long the SDK call took inside the handler, in milliseconds.
    pub ms: f64,
    /// The access key id the client signed with, when the handler says (`rotation.js`).
    pub access_key_id: Option<String>,
}

/// What `n` invokes gave.
#[derive(Clone, Debug, Default)]
pub struct Tally {
    pub invokes: usize,
    /// Invokes that answered the expected digest.
    pub right: usize,
    /// Each invoke's SDK call, in milliseconds, in invoke order.
    pub ms: Vec<f64>,
}

impl Tally {
    /// The median SDK call (nearest rank), in milliseconds.
    pub fn p50(&self) -> f64 {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        match sorted.len() {
            0 => f64::NAN,
            n => sorted[n.div_ceil(2) - 1],
        }
    }
}

/// The function in its emulated environment; stops with it.
pub struct SdkFunction {
    pub emulator: Emulator,
    /// The function's `AWS_ENDPOINT_URL_SECRETS_MANAGER`.
    pub endpoint: String,
    pub route: Route,
    _layer: Option<Layer>,
    _task: tempfile::TempDir,
}

fn fixture(name: &str) -> PathBuf {
    repo_root().join("tests/fixtures/sdk").join(name)
}

/// The `node` on `PATH`, as an absolute path: the emulator gives the runtime
/// Lambda's environment only, whose `PATH` may not hold it.
pub fn node() -> Result<PathBuf> {
    let out = Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .context("looking for node")?;
    let path = String::from_utf8(out.stdout)?.trim().to_owned();
    if path.is_empty() {
        bail!("node is not installed (the SDK function runs on Node.js)");
    }
    Ok(PathBuf::from(path))
}

/// The repository's `node_modules`, installed from `package-lock.json` (`npm ci`)
/// when missing or older than the lock file, under a file lock so parallel tests
/// install it once. `make test`/`make demo` install it before anything runs.
pub fn ensure_node_modules() -> Result<PathBuf> {
    let root = repo_root();
    let modules = root.join("node_modules");
    let stamp = modules.join(".package-lock.json");
    let fresh = |stamp: &Path| -> bool {
        let modified = |p: &Path| std::fs::metadata(p).and_then(|m| m.modified()).ok();
        match (modified(stamp), modified(&root.join("package-lock.json"))) {
            (Some(installed), Some(wanted)) => installed >= wanted,
            _ => false,
        }
    };
    if fresh(&stamp) {
        return Ok(modules);
    }
    let lock = std::fs::File::create(std::env::temp_dir().join("secrets-sidecar-npm-ci.lock"))?;
    lock.lock()?;
    if fresh(&stamp) {
        return Ok(modules);
    }
    let status = Command::new("npm")
        .args(["ci", "--no-audit", "--no-fund"])
        .current_dir(&root)
        .stdout(Stdio::null())
        .status()
        .context("running npm ci")?;
    if !status.success() {
        bail!("npm ci failed with {status}");
    }
    Ok(modules)
}

/// SHA-256 of `bytes` in hex (with `sha256sum`, as the fixtures' digests are checked).
pub fn sha256_hex(bytes: &[u8]) -> Result<String> {
    let mut child = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .context("sha256sum")?;
    child
        .stdin
        .take()
        .ok_or_else(|| anyhow!("sha256sum's stdin"))?
        .write_all(bytes)?;
    let out = child.wait_with_output()?;
    let digest = String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned();
    if digest.len() != 64 {
        bail!("sha256sum gave no digest");
    }
    Ok(digest)
}

impl SdkFunction {
    /// Starts the emulator for a function reading `secret_id` by `route`; `upstream`
    /// is "AWS" (the fault proxy's endpoint): the sidecar's upstream, or the function's
    /// own endpoint when it goes direct. `sidecar_env` adds the sidecar's configuration
    /// (function configuration, seen by the function too, as on Lambda). The
    /// environment starts at the first invoke (or `emulator.init()`).
    pub async fn start(
        secret_id: &str,
        upstream: &str,
        route: Route,
        sidecar_env: &[(&str, &str)],
    ) -> Result<SdkFunction> {
        Self::start_with(secret_id, upstream, route, sidecar_env, Options::default()).await
    }

    /// [`SdkFunction::start`] with `options`.
    pub async fn start_with(
        secret_id: &str,
        upstream: &str,
        route: Route,
        sidecar_env: &[(&str, &str)],
        options: Options,
    ) -> Result<SdkFunction> {
        let modules = tokio::task::spawn_blocking(ensure_node_modules).await??;
        let node = node()?;
        let task = tempfile::Builder::new().prefix("task-").tempdir()?;
        let handler = task.path().join("index.js");
        std::fs::copy(fixture(options.handler), &handler)?;
        let runtime = fixture("node-runtime.cjs");
        let mut cfg = FunctionConfig::new("article-sdk", &handler)
            .managed_runtime(
                "nodejs20.x",
                &[&node.display().to_string(), &runtime.display().to_string()],
            )
            .timeout(Duration::from_secs(10))
            .mode(options.mode)
            .env("SECRET_ID", secret_id)
            .env("NODE_PATH", &modules.display().to_string());
        cfg.handler = "index.handler".to_owned();
        if options.rotating_credentials {
            cfg = cfg.rotating_credentials();
        }
        let (layer, endpoint) = match route {
            Route::Sidecar => {
                let sidecar = crate::bins::ensure("secrets-sidecar", "secrets-sidecar", "SIDECAR_BIN")?;
                let layer = Layer::new()?;
                layer.add_binary("secrets-sidecar", &sidecar)?;
                // Each emulated environment is its own sandbox in Lambda but here they
                // share the loopback: a port of its own (function and sidecar read it).
                let port = crate::net::free_port();
                cfg = cfg
                    .extensions(layer.extensions())
                    .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", &port.to_string())
                    .env("SECRETS_SIDECAR_UPSTREAM_ENDPOINT", upstream);
                (Some(layer), format!("http://localhost:{port}"))
            }
            Route::Direct => (None, upstream.to_owned()),
        };
        cfg = cfg.env("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint);
        for (k, v) in sidecar_env {
            cfg = cfg.env(k, v);
        }
        Ok(SdkFunction {
            emulator: Emulator::start(cfg).await?,
            endpoint,
            route,
            _layer: layer,
            _task: task,
        })
    }

    /// `n` invokes, one after the other; stops at the first that fails.
    pub async fn invoke_n(&self, n: usize, digest: &str) -> Result<Tally> {
        let mut tally = Tally::default();
        for i in 0..n {
            let call = self.call().await.with_context(|| format!("invoke #{i}"))?;
            tally.invokes += 1;
            tally.right += usize::from(call.sha256 == digest);
            tally.ms.push(call.ms);
        }
        Ok(tally)
    }

    /// `n` invokes sent all at once (on Managed Instances, up to
    /// `AWS_LAMBDA_MAX_CONCURRENCY` run together; elsewhere they queue); fails if any
    /// failed.
    pub async fn invoke_at_once(&self, n: usize, digest: &str) -> Result<Tally> {
        let invoked = self.emulator.invoke_all(vec![Bytes::from_static(b"{}"); n]).await;
        let mut tally = Tally::default();
        for (i, one) in invoked.into_iter().enumerate() {
            let call = answer(one).with_context(|| format!("invoke #{i}"))?;
            tally.invokes += 1;
            tally.right += usize::from(call.sha256 == digest);
            tally.ms.push(call.ms);
        }
        Ok(tally)
    }

    /// One invoke: the function's answer, or the error it raised (its type and
    /// message: the SDK's exception, which never holds a value).
    pub async fn call(&self) -> Result<Call> {
        self.call_with(serde_json::json!({})).await
    }

    /// One invoke with `event`, as [`SdkFunction::call`].
    pub async fn call_with(&self, event: serde_json::Value) -> Result<Call> {
        answer(self.emulator.invoke(event.to_string()).await)
    }
}

/// The function's answer to one invoke, or the error it raised.
fn answer(invoked: Invoked) -> Result<Call> {
    match invoked.outcome {
        Outcome::Response(body) => {
            let v: serde_json::Value = serde_json::from_slice(&body).context("the function's answer")?;
            let sha256 = v["sha256"].as_str().ok_or_else(|| anyhow!("no digest in the answer"))?;
            Ok(Call {
                sha256: sha256.to_owned(),
                ms: v["ms"].as_f64().unwrap_or(f64::NAN),
                access_key_id: v["accessKeyId"].as_str().map(str::to_owned),
            })
        }
        Outcome::FunctionError { error_type, body } => {
            let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
            bail!(
                "the function failed ({error_type}): {} {}",
                v["errorType"].as_str().unwrap_or(""),
                v["errorMessage"].as_str().unwrap_or("")
            )
        }
        other => bail!("the invoke did not answer: {other:?}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_median_is_the_nearest_rank() {
        let tally = |ms: &[f64]| Tally {
            invokes: ms.len(),
            right: ms.len(),
            ms: ms.to_vec(),
        };
        assert_eq!(tally(&[5.0, 1.0, 3.0]).p50(), 3.0);
        assert_eq!(tally(&[4.0, 1.0, 2.0, 3.0]).p50(), 2.0);
        assert!(tally(&[]).p50().is_nan());
    }

    #[test]
    fn digests_are_sha256() -> Result<()> {
        assert_eq!(
            sha256_hex(b"hello")?,
            "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824"
        );
        Ok(())
    }
}
