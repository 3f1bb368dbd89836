//! The SDK-protocol route (issue 12) driven by the real AWS SDKs: boto3, the AWS SDK
//! for JavaScript v3 and the Rust SDK, each configured only through the environment
//! (`AWS_ENDPOINT_URL_SECRETS_MANAGER` / `AWS_ENDPOINT_URL_SSM` naming the sidecar),
//! as a function that changed no code would be.
//!
//! Each test starts moto, the fault proxy (which counts the sidecar's upstream calls
//! by operation) and the sidecar, then runs one client scenario
//! (`tests/fixtures/sdk/boto3_client.py`, `tests/fixtures/sdk/js_client.mjs`, the
//! harness's `sdk-probe` bin), which prints what the SDK parsed as one JSON line. The
//! three clients print the same shape, and where a scenario reads, the same scenario
//! run straight against moto is the reference: an answer from the cache must parse
//! to the same objects as AWS's own. Every test exists once per SDK (the
//! `sdk_suite!` modules at the end).
//!
//! The sidecar also receives `AWS_ENDPOINT_URL_*` naming itself, as in Lambda, where
//! extensions inherit the function's environment; its upstream is set with
//! `SECRETS_SIDECAR_UPSTREAM_ENDPOINT`.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use harness::moto::{Moto, ParamType};
use harness::proxy::FaultProxy;
use harness::sidecar::{Sidecar, SidecarBuilder};
use harness::venv;
use serde_json::{json, Value};
use tokio::process::Command;

const BIN: &str = env!("CARGO_BIN_EXE_secrets-sidecar");

/// The credentials the sidecar is given, and a client signing as the function.
const ACCESS_KEY: &str = "testing";
const SECRET_KEY: &str = "testing";

/// How long one client run may take (its SDK calls included) before it is killed.
const CLIENT_TIMEOUT: Duration = Duration::from_secs(60);

type R = Result<()>;

#[derive(Clone, Copy, Debug)]
enum Sdk {
    Boto3,
    Js,
    Rust,
}

impl Sdk {
    /// The command running one scenario of this SDK's client; fails with what to run
    /// when the client's packages are not installed.
    fn command(self) -> Result<Command> {
        let root = venv::repo_root();
        let fixtures = root.join("tests/fixtures/sdk");
        match self {
            Sdk::Boto3 => {
                let python = venv::tool("python");
                if !python.is_file() {
                    bail!(
                        "{} is missing: run `make test` (it creates .venv with the pinned boto3)",
                        python.display()
                    );
                }
                let mut cmd = Command::new(python);
                cmd.arg(fixtures.join("boto3_client.py"));
                Ok(cmd)
            }
            Sdk::Js => {
                check_node_modules(&root)?;
                let mut cmd = Command::new("node");
                cmd.arg(fixtures.join("js_client.mjs"));
                Ok(cmd)
            }
            Sdk::Rust => Ok(Command::new(harness::bins::ensure(
                "sdk-probe",
                "harness",
                "SDK_PROBE_BIN",
            )?)),
        }
    }
}

/// The JavaScript clients must be installed (`npm ci`) at the versions package.json pins.
fn check_node_modules(root: &std::path::Path) -> Result<()> {
    let manifest: Value = serde_json::from_str(&std::fs::read_to_string(root.join("package.json"))?)?;
    for package in ["@aws-sdk/client-secrets-manager", "@aws-sdk/client-ssm"] {
        let pinned = manifest["devDependencies"][package]
            .as_str()
            .ok_or_else(|| anyhow!("package.json does not pin {package}"))?;
        let installed_at: PathBuf = root.join("node_modules").join(package).join("package.json");
        let installed = std::fs::read_to_string(&installed_at)
            .ok()
            .and_then(|s| serde_json::from_str::<Value>(&s).ok())
            .and_then(|v| v["version"].as_str().map(str::to_owned));
        match installed {
            Some(v) if v == pinned => {}
            Some(v) => bail!(
                "node_modules holds {package} {v}, package.json pins {pinned}: run `make test` (it runs `npm ci`)"
            ),
            None => bail!("node_modules has no {package}: run `make test` (it runs `npm ci`)"),
        }
    }
    Ok(())
}

/// Who a client signs as.
#[derive(Clone, Copy, Debug)]
struct Creds {
    access_key: &'static str,
    secret_key: &'static str,
}

const FUNCTION: Creds = Creds {
    access_key: ACCESS_KEY,
    secret_key: SECRET_KEY,
};

/// moto, the counting proxy in front of it, and the sidecar calling the proxy.
struct World {
    moto: Moto,
    proxy: FaultProxy,
    sidecar: Sidecar,
}

impl World {
    /// Starts everything once `seed` has put the test's data into moto, and forgets
    /// the calls made so far, so the proxy counts only what the clients cause.
    async fn start(seed: impl AsyncFnOnce(&Moto) -> R) -> Result<World> {
        let moto = Moto::start().await?;
        seed(&moto).await?;
        let proxy = FaultProxy::start(moto.port).await?;
        let builder = SidecarBuilder::new(BIN)
            .var("AWS_ACCESS_KEY_ID", ACCESS_KEY)
            .var("AWS_SECRET_ACCESS_KEY", SECRET_KEY)
            .var("SECRETS_SIDECAR_UPSTREAM_ENDPOINT", &proxy.endpoint());
        let own = format!("http://127.0.0.1:{}", builder.port);
        let sidecar = builder
            .var("AWS_ENDPOINT_URL_SECRETS_MANAGER", &own)
            .var("AWS_ENDPOINT_URL_SSM", &own)
            .spawn()
            .await?;
        proxy.reset_counts();
        Ok(World { moto, proxy, sidecar })
    }

    /// Runs a scenario through the sidecar, signed with the function's credentials.
    async fn client(&self, sdk: Sdk, scenario: &str, args: &[&str]) -> Result<Value> {
        self.client_as(sdk, FUNCTION, scenario, args).await
    }

    async fn client_as(&self, sdk: Sdk, creds: Creds, scenario: &str, args: &[&str]) -> Result<Value> {
        run_client(sdk, &self.sidecar.url(""), creds, scenario, args).await
    }

    /// Runs a scenario straight against moto: what AWS itself would have answered.
    async fn direct(&self, sdk: Sdk, scenario: &str, args: &[&str]) -> Result<Value> {
        run_client(sdk, &self.moto.endpoint(), FUNCTION, scenario, args).await
    }

    /// Upstream calls so far, by operation, for assertion messages.
    fn upstream(&self) -> String {
        let mut counts: Vec<_> = self.proxy.counts().into_iter().collect();
        counts.sort();
        format!("upstream calls {counts:?}")
    }

    /// `secrets_sidecar_requests_total` summed over the series of route "sdk".
    async fn sdk_requests(&self) -> Result<u64> {
        let text = self.sidecar.get("/metrics").await?.text();
        Ok(text
            .lines()
            .filter(|l| l.starts_with("secrets_sidecar_requests_total{") && l.contains("route=\"sdk\""))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum())
    }
}

/// Runs one client scenario against `endpoint` with nothing but the SDK's own
/// environment variables (no shared config files, no instance metadata, one attempt
/// per call so every request the SDK makes is one the test sees), killed after
/// [`CLIENT_TIMEOUT`]. Returns the JSON line it printed.
async fn run_client(sdk: Sdk, endpoint: &str, creds: Creds, scenario: &str, args: &[&str]) -> Result<Value> {
    let mut cmd = sdk.command()?;
    cmd.arg(scenario).args(args).env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    cmd.envs([
        ("HOME", "/nonexistent"),
        ("AWS_CONFIG_FILE", "/nonexistent"),
        ("AWS_SHARED_CREDENTIALS_FILE", "/nonexistent"),
        ("AWS_EC2_METADATA_DISABLED", "true"),
        ("AWS_REGION", "us-east-1"),
        ("AWS_DEFAULT_REGION", "us-east-1"),
        ("AWS_MAX_ATTEMPTS", "1"),
        ("AWS_ACCESS_KEY_ID", creds.access_key),
        ("AWS_SECRET_ACCESS_KEY", creds.secret_key),
        ("AWS_ENDPOINT_URL_SECRETS_MANAGER", endpoint),
        ("AWS_ENDPOINT_URL_SSM", endpoint),
        ("PYTHONDONTWRITEBYTECODE", "1"),
    ])
    .stdin(Stdio::null())
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .kill_on_drop(true);
    let what = format!("{sdk:?} {scenario} {args:?}");
    let out = tokio::time::timeout(CLIENT_TIMEOUT, cmd.output())
        .await
        .map_err(|_| anyhow!("{what}: no answer within {CLIENT_TIMEOUT:?} (killed)"))?
        .with_context(|| format!("{what}: spawning the client"))?;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        bail!("{what} failed ({}):\n{stderr}\n{stdout}", out.status);
    }
    let line = stdout
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .ok_or_else(|| anyhow!("{what} printed nothing; stderr:\n{stderr}"))?;
    serde_json::from_str(line).with_context(|| format!("{what} printed {line}"))
}

/// A value only this test run knows, so a stale or foreign answer cannot match it.
fn planted(label: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    format!("{label}-{}-{nanos:x}", std::process::id())
}

/// The error a scenario's `get-each` outcome holds, or a failure naming what came back instead.
fn error_in<'a>(outcome: &'a Value, what: &str) -> Result<&'a Value> {
    outcome
        .get("error")
        .ok_or_else(|| anyhow!("{what}: expected an error, got {outcome}"))
}

// ---------------------------------------------------------------------------
// The scenarios, each run by every SDK.

async fn get_secret_value_twice_makes_one_upstream_call(sdk: Sdk) -> R {
    let value = planted("db-password");
    let w = World::start(async |m: &Moto| m.create_secret("sdk/db", &value).await.map(drop)).await?;
    let out = w.client(sdk, "get-secret-twice", &["sdk/db"]).await?;
    assert_eq!(out["first"]["value"], json!(value), "the planted value: {out}");
    assert_eq!(out["first"], out["second"], "both reads parse alike");
    assert_eq!(w.proxy.count("GetSecretValue"), 1, "{}", w.upstream());
    assert_eq!(w.proxy.total(), 1, "{}", w.upstream());
    assert_eq!(w.sdk_requests().await?, 2, "/metrics counts both on route=\"sdk\"");
    let direct = w.direct(sdk, "get-secret-twice", &["sdk/db"]).await?;
    assert_eq!(out["first"], direct["first"], "parsed as AWS's (moto's) own answer");
    Ok(())
}

async fn get_parameter_twice_makes_one_upstream_call(sdk: Sdk) -> R {
    let value = planted("api-key");
    let w = World::start(async |m: &Moto| {
        m.put_parameter("/sdk/key", &value, ParamType::SecureString)
            .await
            .map(drop)
    })
    .await?;
    let out = w.client(sdk, "get-parameter-twice", &["/sdk/key"]).await?;
    assert_eq!(out["first"]["value"], json!(value), "decrypted: {out}");
    assert_eq!(out["first"]["type"], "SecureString");
    assert_eq!(out["first"], out["second"], "both reads parse alike");
    assert_eq!(w.proxy.count("GetParameter"), 1, "{}", w.upstream());
    assert_eq!(w.proxy.total(), 1, "{}", w.upstream());
    assert_eq!(w.sdk_requests().await?, 2, "/metrics counts both on route=\"sdk\"");
    let direct = w.direct(sdk, "get-parameter-twice", &["/sdk/key"]).await?;
    assert_eq!(out["first"], direct["first"], "parsed as AWS's (moto's) own answer");
    Ok(())
}

async fn a_binary_secret_parses_as_awss_own(sdk: Sdk) -> R {
    // Every byte value, so a base64 or UTF-8 slip anywhere shows.
    let bytes: Vec<u8> = (0..=255u8).rev().chain(planted("tail").into_bytes()).collect();
    let w = World::start(async |m: &Moto| m.create_binary_secret("sdk/cert", &bytes).await.map(drop)).await?;
    let out = w.client(sdk, "get-secret-twice", &["sdk/cert"]).await?;
    let direct = w.direct(sdk, "get-secret-twice", &["sdk/cert"]).await?;
    assert!(
        direct["first"]["binary"].is_string(),
        "moto answers SecretBinary: {direct}"
    );
    assert_eq!(out["first"], direct["first"], "parsed as AWS's (moto's) own answer");
    assert_eq!(out["first"], out["second"]);
    assert_eq!(w.proxy.total(), 1, "{}", w.upstream());
    Ok(())
}

async fn missing_ids_raise_the_sdks_not_found_exceptions(sdk: Sdk) -> R {
    let w = World::start(async |_: &Moto| Ok(())).await?;
    let out = w.client(sdk, "get-each", &["sdk/missing", "/sdk/missing"]).await?;
    let direct = w.direct(sdk, "get-each", &["sdk/missing", "/sdk/missing"]).await?;
    for key in ["secret", "parameter"] {
        for field in ["code", "typed"] {
            assert_eq!(
                out[key]["error"][field], direct[key]["error"][field],
                "{key} {field} as AWS's (moto's) own: {out} vs {direct}"
            );
        }
    }
    let secret = error_in(&out["secret"], "GetSecretValue of a missing secret")?;
    assert_eq!(secret["code"], "ResourceNotFoundException", "{out}");
    assert_eq!(secret["typed"], true, "raised as the SDK's modeled exception: {out}");
    let parameter = error_in(&out["parameter"], "GetParameter of a missing parameter")?;
    assert_eq!(parameter["code"], "ParameterNotFound", "{out}");
    assert_eq!(parameter["typed"], true, "raised as the SDK's modeled exception: {out}");
    Ok(())
}

async fn another_access_key_is_refused_without_upstream_call(sdk: Sdk) -> R {
    let value = planted("db-password");
    let w = World::start(async |m: &Moto| {
        m.create_secret("sdk/db", &value).await?;
        m.put_parameter("/sdk/key", &value, ParamType::SecureString)
            .await
            .map(drop)
    })
    .await?;
    let other = Creds {
        access_key: "AKIAOTHERIDENTITY7Q",
        secret_key: "another-identitys-secret",
    };
    let out = w.client_as(sdk, other, "get-each", &["sdk/db", "/sdk/key"]).await?;
    for (op, outcome) in [("GetSecretValue", &out["secret"]), ("GetParameter", &out["parameter"])] {
        let e = error_in(outcome, op)?;
        assert_eq!(e["status"], 403, "{op}: {out}");
        let code = e["code"].as_str().unwrap_or_default();
        assert!(
            ["UnrecognizedClientException", "AccessDeniedException"].contains(&code),
            "{op}: {out}"
        );
        let message = e["message"].as_str().unwrap_or_default();
        assert!(message.contains(other.access_key), "{op}: the key is named: {out}");
        assert!(
            message.contains("only the function's own credentials"),
            "{op}: says what is served: {out}"
        );
    }
    assert_eq!(w.proxy.total(), 0, "nothing forwarded: {}", w.upstream());
    Ok(())
}

async fn a_wrong_secret_key_is_refused_without_upstream_call(sdk: Sdk) -> R {
    let value = planted("db-password");
    let w = World::start(async |m: &Moto| {
        m.create_secret("sdk/db", &value).await?;
        m.put_parameter("/sdk/key", &value, ParamType::SecureString)
            .await
            .map(drop)
    })
    .await?;
    let forged = Creds {
        access_key: ACCESS_KEY,
        secret_key: "not-the-secret-key",
    };
    let out = w.client_as(sdk, forged, "get-each", &["sdk/db", "/sdk/key"]).await?;
    for (op, outcome) in [("GetSecretValue", &out["secret"]), ("GetParameter", &out["parameter"])] {
        let e = error_in(outcome, op)?;
        assert_eq!(e["status"], 403, "{op}: {out}");
        let code = e["code"].as_str().unwrap_or_default();
        assert!(
            ["InvalidSignatureException", "SignatureDoesNotMatch"].contains(&code),
            "{op}: {out}"
        );
        assert!(
            !e["message"].as_str().unwrap_or_default().contains(forged.secret_key),
            "{op}: no key material in the message: {out}"
        );
    }
    assert_eq!(w.proxy.total(), 0, "nothing forwarded: {}", w.upstream());
    Ok(())
}

async fn put_secret_value_passes_through_and_the_next_read_sees_it(sdk: Sdk) -> R {
    let (old, new) = (planted("old"), planted("new"));
    let w = World::start(async |m: &Moto| m.create_secret("sdk/db", &old).await.map(drop)).await?;
    // Read (cached), write through the sidecar, read again.
    let out = w.client(sdk, "put-secret", &["sdk/db", &new]).await?;
    assert_eq!(out["before"]["value"], json!(old), "{out}");
    assert_eq!(w.proxy.count("PutSecretValue"), 1, "forwarded once: {}", w.upstream());
    assert_eq!(
        out["put"]["arn"], out["before"]["arn"],
        "PutSecretValue's own answer: {out}"
    );
    assert_eq!(
        out["after"]["value"],
        json!(new),
        "the write invalidated the entry: {out}"
    );
    assert_eq!(out["after"]["version_id"], out["put"]["version_id"], "{out}");
    let upstream = w
        .moto
        .call(
            harness::moto::Service::SecretsManager,
            "GetSecretValue",
            json!({"SecretId": "sdk/db"}),
        )
        .await?;
    assert_eq!(upstream["SecretString"], json!(new), "the write reached moto");
    Ok(())
}

async fn put_parameter_passes_through_and_the_next_read_sees_it(sdk: Sdk) -> R {
    let (old, new) = (planted("old"), planted("new"));
    let w = World::start(async |m: &Moto| {
        m.put_parameter("/sdk/key", &old, ParamType::SecureString)
            .await
            .map(drop)
    })
    .await?;
    let out = w.client(sdk, "put-parameter", &["/sdk/key", &new]).await?;
    assert_eq!(out["before"]["value"], json!(old), "{out}");
    assert_eq!(w.proxy.count("PutParameter"), 1, "forwarded once: {}", w.upstream());
    assert_eq!(out["put"]["version"], json!(2), "PutParameter's own answer: {out}");
    assert_eq!(
        out["after"]["value"],
        json!(new),
        "the write invalidated the entry: {out}"
    );
    assert_eq!(out["after"]["version"], json!(2), "{out}");
    Ok(())
}

async fn batch_get_secret_value_by_id_list(sdk: Sdk) -> R {
    let (a, b) = (planted("a"), planted("b"));
    let w = World::start(async |m: &Moto| {
        m.create_secret("sdk/a", &a).await?;
        m.create_secret("sdk/b", &b).await.map(drop)
    })
    .await?;
    let out = w
        .client(sdk, "batch-secrets", &["sdk/a", "sdk/b", "sdk/missing"])
        .await?;
    let values: Vec<(&Value, &Value)> = out["values"]
        .as_array()
        .map(|v| v.iter().map(|s| (&s["name"], &s["value"])).collect())
        .unwrap_or_default();
    assert_eq!(
        values,
        [(&json!("sdk/a"), &json!(a)), (&json!("sdk/b"), &json!(b))],
        "{out}"
    );
    assert_eq!(
        out["errors"],
        json!([{"secret_id": "sdk/missing", "code": "ResourceNotFoundException"}]),
        "the missing id is a per-item error: {out}"
    );
    let direct = w
        .direct(sdk, "batch-secrets", &["sdk/a", "sdk/b", "sdk/missing"])
        .await?;
    assert_eq!(out, direct, "parsed as AWS's (moto's) own answer");
    assert!(w.proxy.total() >= 1, "{}", w.upstream());

    w.proxy.reset_counts();
    let again = w.client(sdk, "batch-secrets", &["sdk/a", "sdk/b"]).await?;
    assert_eq!(again["values"], out["values"], "{again}");
    assert_eq!(
        w.proxy.total(),
        0,
        "the second batch is served from the cache: {}",
        w.upstream()
    );
    let single = w.client(sdk, "get-secret-twice", &["sdk/a"]).await?;
    assert_eq!(single["first"]["value"], json!(a));
    assert_eq!(
        w.proxy.total(),
        0,
        "GetSecretValue shares the batch's entries: {}",
        w.upstream()
    );
    Ok(())
}

async fn get_parameters_reports_invalid_parameters(sdk: Sdk) -> R {
    let (one, two) = (planted("one"), planted("two"));
    let w = World::start(async |m: &Moto| {
        m.put_parameter("/sdk/one", &one, ParamType::SecureString).await?;
        m.put_parameter("/sdk/two", &two, ParamType::String).await.map(drop)
    })
    .await?;
    let names = ["/sdk/one", "/sdk/two", "/sdk/missing"];
    let out = w.client(sdk, "get-parameters", &names).await?;
    let values: Vec<(&Value, &Value)> = out["parameters"]
        .as_array()
        .map(|v| v.iter().map(|p| (&p["name"], &p["value"])).collect())
        .unwrap_or_default();
    assert_eq!(
        values,
        [(&json!("/sdk/one"), &json!(one)), (&json!("/sdk/two"), &json!(two))],
        "{out}"
    );
    assert_eq!(out["invalid"], json!(["/sdk/missing"]), "{out}");
    let direct = w.direct(sdk, "get-parameters", &names).await?;
    assert_eq!(out, direct, "parsed as AWS's (moto's) own answer");
    assert!(w.proxy.total() >= 1, "{}", w.upstream());

    w.proxy.reset_counts();
    let again = w.client(sdk, "get-parameters", &names[..2]).await?;
    assert_eq!(again["parameters"], out["parameters"], "{again}");
    assert_eq!(w.proxy.total(), 0, "served from the cache: {}", w.upstream());
    Ok(())
}

/// Parameters `/sdk/tree/p00`..`p19` directly under the path, `/sdk/tree/nested/q00`..`q04` below.
fn tree() -> Vec<(String, String)> {
    let direct = (0..20).map(|i| (format!("/sdk/tree/p{i:02}"), planted(&format!("p{i}"))));
    let nested = (0..5).map(|i| (format!("/sdk/tree/nested/q{i:02}"), planted(&format!("q{i}"))));
    direct.chain(nested).collect()
}

/// Checks one pagination: every page within `page_size`, no parameter twice, and
/// exactly `expected` (name, value) pairs.
fn check_pages(out: &Value, key: &str, expected: &[(String, String)], page_size: u64) {
    let sizes: Vec<u64> = out[key]["page_sizes"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
        .unwrap_or_default();
    assert!(sizes.iter().all(|s| *s <= page_size), "{key}: pages {sizes:?}");
    let full_pages = sizes.iter().filter(|s| **s > 0).count() as u64;
    let wanted_pages = (expected.len() as u64).div_ceil(page_size);
    assert!(
        full_pages >= wanted_pages,
        "{key}: {full_pages} non-empty pages for {} parameters: {sizes:?}",
        expected.len()
    );
    let mut got: Vec<(String, String)> = out[key]["parameters"]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|p| {
                    (
                        p["name"].as_str().unwrap_or_default().to_owned(),
                        p["value"].as_str().unwrap_or_default().to_owned(),
                    )
                })
                .collect()
        })
        .unwrap_or_default();
    let listed = got.len();
    got.sort();
    got.dedup();
    assert_eq!(listed, got.len(), "{key}: a parameter listed twice");
    let mut expected = expected.to_vec();
    expected.sort();
    assert_eq!(got, expected, "{key}");
}

async fn get_parameters_by_path_paginates_from_the_cache(sdk: Sdk) -> R {
    let tree = tree();
    let w = World::start(async |m: &Moto| {
        for (i, (name, value)) in tree.iter().enumerate() {
            let kind = if i % 2 == 0 {
                ParamType::SecureString
            } else {
                ParamType::String
            };
            m.put_parameter(name, value, kind).await?;
        }
        Ok(())
    })
    .await?;
    let out = w.client(sdk, "by-path", &["/sdk/tree", "10"]).await?;
    let flat: Vec<_> = tree.iter().filter(|(n, _)| !n.contains("/nested/")).cloned().collect();
    check_pages(&out, "flat", &flat, 10);
    check_pages(&out, "recursive", &tree, 10);
    assert!(w.proxy.count("GetParametersByPath") >= 1, "{}", w.upstream());

    w.proxy.reset_counts();
    let again = w.client(sdk, "by-path", &["/sdk/tree", "10"]).await?;
    check_pages(&again, "flat", &flat, 10);
    check_pages(&again, "recursive", &tree, 10);
    assert_eq!(
        w.proxy.total(),
        0,
        "the second pagination is served from the cache: {}",
        w.upstream()
    );

    // Sorted by name, each parameter parses as moto's own (types, versions, ARNs, dates).
    let direct = w.direct(sdk, "by-path", &["/sdk/tree", "10"]).await?;
    for key in ["flat", "recursive"] {
        let sorted = |v: &Value| {
            let mut items = v[key]["parameters"].as_array().cloned().unwrap_or_default();
            items.sort_by_key(|p| p["name"].to_string());
            items
        };
        assert_eq!(sorted(&out), sorted(&direct), "{key}");
    }
    Ok(())
}

/// One module per SDK, one test per scenario, so a failure names both.
macro_rules! sdk_suite {
    ($module:ident, $sdk:expr) => {
        mod $module {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_secret_value_twice_makes_one_upstream_call() -> R {
                super::get_secret_value_twice_makes_one_upstream_call($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_parameter_twice_makes_one_upstream_call() -> R {
                super::get_parameter_twice_makes_one_upstream_call($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_binary_secret_parses_as_awss_own() -> R {
                super::a_binary_secret_parses_as_awss_own($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn missing_ids_raise_the_sdks_not_found_exceptions() -> R {
                super::missing_ids_raise_the_sdks_not_found_exceptions($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn another_access_key_is_refused_without_upstream_call() -> R {
                super::another_access_key_is_refused_without_upstream_call($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn a_wrong_secret_key_is_refused_without_upstream_call() -> R {
                super::a_wrong_secret_key_is_refused_without_upstream_call($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_secret_value_passes_through_and_the_next_read_sees_it() -> R {
                super::put_secret_value_passes_through_and_the_next_read_sees_it($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn put_parameter_passes_through_and_the_next_read_sees_it() -> R {
                super::put_parameter_passes_through_and_the_next_read_sees_it($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn batch_get_secret_value_by_id_list() -> R {
                super::batch_get_secret_value_by_id_list($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_parameters_reports_invalid_parameters() -> R {
                super::get_parameters_reports_invalid_parameters($sdk).await
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn get_parameters_by_path_paginates_from_the_cache() -> R {
                super::get_parameters_by_path_paginates_from_the_cache($sdk).await
            }
        }
    };
}

sdk_suite!(boto3, Sdk::Boto3);
sdk_suite!(js_v3, Sdk::Js);
sdk_suite!(rust_sdk, Sdk::Rust);
