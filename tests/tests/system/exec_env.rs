//! Secrets as environment variables and files, end to end: the real sidecar and the
//! real exec wrapper in an emulated Lambda environment, beside a managed runtime
//! (Node.js or Python, whose handler only reads `process.env` / `os.environ` and
//! files) or a custom runtime whose `bootstrap` uses `secrets-sidecar exec`, with
//! moto as AWS. The fixtures answer with SHA-256 digests of what they read, so no
//! value ever reaches a log or this test's output.

use std::io::Write;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{anyhow, bail, Context, Result};
use harness::emulator::{Emulator, FunctionConfig, Mode, Outcome, ShutdownReason, Trace};
use harness::layer::Layer;
use harness::moto::{Moto, ParamType};
use serde_json::{json, Value};
use tokio::time::Instant;

const DB_SECRET: &str = "app/db";
const STRIPE_PARAMETER: &str = "/app/stripe";

/// Which runtime the function runs.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Runtime {
    /// nodejs20.x: the wrapper runs through `AWS_LAMBDA_EXEC_WRAPPER`.
    Node,
    /// python3.11: the same.
    Python,
    /// provided.al2023 whose `bootstrap` script runs `secrets-sidecar exec -- python3 …`.
    CustomExec,
    /// nodejs20.x without the wrapper (the start-up baseline).
    NodeBare,
}

/// Values planted for one test (unique, so scanning logs for them means something).
struct Values {
    db_url: String,
    db_json: String,
    stripe: String,
}

impl Values {
    fn new() -> Values {
        let tag = uuid::Uuid::new_v4().simple().to_string();
        let db_url = format!("postgres://app:pw-{tag}@db.internal/app");
        Values {
            db_json: json!({ "url": db_url, "user": "app" }).to_string(),
            db_url,
            stripe: format!("sk_live_{tag}"),
        }
    }

    fn all(&self) -> [&str; 3] {
        [&self.db_url, &self.db_json, &self.stripe]
    }
}

struct Setup {
    moto: Moto,
    emulator: Emulator,
    values: Values,
    /// A fresh folder under /tmp for the secret files (removed at the end).
    dir: PathBuf,
    _layer: Layer,
    _task: tempfile::TempDir,
}

impl Drop for Setup {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fixtures/runtimes")
        .join(name)
}

/// The Python interpreter itself (not a version manager's shim, which needs its own
/// environment): the emulator gives the runtime Lambda's environment only.
fn python() -> Result<String> {
    let out = std::process::Command::new("python3")
        .args(["-c", "import sys; print(sys.executable)"])
        .output()
        .context("python3")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn node() -> Result<String> {
    let out = std::process::Command::new("sh")
        .args(["-c", "command -v node"])
        .output()
        .context("node")?;
    Ok(String::from_utf8(out.stdout)?.trim().to_owned())
}

fn sha256(bytes: &[u8]) -> Result<String> {
    let mut child = std::process::Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    child.stdin.take().ok_or_else(|| anyhow!("stdin"))?.write_all(bytes)?;
    let out = child.wait_with_output()?;
    Ok(String::from_utf8(out.stdout)?
        .split_whitespace()
        .next()
        .unwrap_or_default()
        .to_owned())
}

impl Setup {
    /// moto seeded with the values, and an emulator whose layer holds the sidecar
    /// and the wrapper; `env` adds function configuration.
    async fn start(runtime: Runtime, mode: Mode, env: &[(&str, String)]) -> Result<Setup> {
        let sidecar = harness::bins::ensure("secrets-sidecar", "secrets-sidecar", "SIDECAR_BIN")?;
        let wrapper = harness::bins::ensure("secrets-sidecar-exec", "secrets-sidecar", "SIDECAR_EXEC_BIN")?;
        let values = Values::new();
        let moto = Moto::start().await?;
        moto.create_secret(DB_SECRET, &values.db_json).await?;
        moto.put_parameter(STRIPE_PARAMETER, &values.stripe, ParamType::SecureString)
            .await?;
        let layer = Layer::new()?;
        let extension = layer.add_binary("secrets-sidecar", &sidecar)?;
        let wrapper = layer.add_wrapper(&wrapper)?;
        let task = tempfile::Builder::new().prefix("task-").tempdir()?;
        let dir = PathBuf::from(format!("/tmp/secrets-sidecar-test-{}", uuid::Uuid::new_v4().simple()));
        let mut cfg = match runtime {
            Runtime::Node | Runtime::NodeBare => {
                let script = task.path().join("index.mjs");
                std::fs::copy(fixture("index.mjs"), &script)?;
                FunctionConfig::new("exec-env", &script)
                    .managed_runtime("nodejs20.x", &[&node()?, &script.display().to_string()])
            }
            Runtime::Python => {
                let script = task.path().join("runtime.py");
                std::fs::copy(fixture("runtime.py"), &script)?;
                FunctionConfig::new("exec-env", &script)
                    .managed_runtime("python3.11", &[&python()?, &script.display().to_string()])
            }
            Runtime::CustomExec => {
                let script = task.path().join("runtime.py");
                std::fs::copy(fixture("runtime.py"), &script)?;
                let bootstrap = task.path().join("bootstrap");
                std::fs::write(
                    &bootstrap,
                    format!(
                        "#!/bin/sh\nexec '{}' exec -- '{}' '{}'\n",
                        extension.display(),
                        python()?,
                        script.display()
                    ),
                )?;
                std::fs::set_permissions(&bootstrap, std::fs::Permissions::from_mode(0o755))?;
                FunctionConfig::new("exec-env", &bootstrap)
            }
        };
        cfg = cfg
            .mode(mode)
            .extensions(layer.extensions())
            .env("AWS_ENDPOINT_URL", &moto.endpoint())
            .env(
                "PARAMETERS_SECRETS_EXTENSION_HTTP_PORT",
                &harness::net::free_port().to_string(),
            );
        // Set on the custom runtime too: Lambda (and so the emulator) ignores it there.
        if runtime != Runtime::NodeBare {
            cfg = cfg.env("AWS_LAMBDA_EXEC_WRAPPER", &wrapper.display().to_string());
        }
        for (k, v) in env {
            cfg = cfg.env(k, v);
        }
        let emulator = Emulator::start(cfg).await?;
        Ok(Setup {
            moto,
            emulator,
            values,
            dir,
            _layer: layer,
            _task: task,
        })
    }

    fn file(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    /// The usual mappings: two variables (a JSON field and an SSM SecureString) and
    /// two files (the whole JSON secret, one field of it).
    fn mappings(dir: &Path) -> Vec<(&'static str, String)> {
        vec![
            (
                "SECRETS_SIDECAR_ENV",
                format!("DATABASE_URL=secretsmanager:{DB_SECRET}#url STRIPE_KEY=ssm:{STRIPE_PARAMETER}"),
            ),
            (
                "SECRETS_SIDECAR_FILES",
                format!(
                    "{}/db.json=secretsmanager:{DB_SECRET} {}/url=secretsmanager:{DB_SECRET}#url",
                    dir.display(),
                    dir.display()
                ),
            ),
        ]
    }

    /// Invokes the fixture asking it to read `env` and `files`; its JSON answer.
    async fn read(&self, env: &[&str], files: &[&Path]) -> Result<Value> {
        let files: Vec<String> = files.iter().map(|p| p.display().to_string()).collect();
        let invoked = self
            .emulator
            .invoke(json!({ "env": env, "files": files }).to_string())
            .await;
        match invoked.outcome {
            Outcome::Response(body) => Ok(serde_json::from_slice(&body)?),
            other => bail!("no response: {other:?}"),
        }
    }

    /// No log line of any process holds any planted value.
    fn assert_no_value_in_logs(&self) {
        let lines = self.emulator.logs().lines();
        for (i, value) in self.values.all().iter().enumerate() {
            let hits = lines.iter().filter(|l| l.contains(value)).count();
            assert_eq!(hits, 0, "planted value #{i} appears in {hits} log lines");
        }
    }
}

/// A test's own folder under /tmp, named before the setup exists.
fn scratch_dir() -> PathBuf {
    PathBuf::from(format!("/tmp/secrets-sidecar-test-{}", uuid::Uuid::new_v4().simple()))
}

async fn start_with_mappings(runtime: Runtime, mode: Mode, extra: &[(&str, String)]) -> Result<Setup> {
    let dir = scratch_dir();
    let mut env = Setup::mappings(&dir);
    env.extend(extra.iter().cloned());
    let mut setup = Setup::start(runtime, mode, &env).await?;
    setup.dir = dir;
    Ok(setup)
}

/// Checks what a runtime read against the planted values, and that neither its
/// command line nor any log holds a value.
async fn check_runtime_reads_everything(runtime: Runtime) -> Result<()> {
    let s = start_with_mappings(runtime, Mode::OnDemand, &[]).await?;
    let (db_json, url) = (s.file("db.json"), s.file("url"));
    let answer = s.read(&["DATABASE_URL", "STRIPE_KEY"], &[&db_json, &url]).await?;
    let expected_runtime = if runtime == Runtime::Node { "node" } else { "python" };
    assert_eq!(answer["runtime"], expected_runtime, "{answer}");
    assert_eq!(
        answer["env"]["DATABASE_URL"],
        sha256(s.values.db_url.as_bytes())?,
        "{runtime:?}"
    );
    assert_eq!(
        answer["env"]["STRIPE_KEY"],
        sha256(s.values.stripe.as_bytes())?,
        "{runtime:?}"
    );
    let whole = &answer["files"][db_json.display().to_string()];
    assert_eq!(whole["sha256"], sha256(s.values.db_json.as_bytes())?, "{answer}");
    assert_eq!(whole["mode"], 0o600);
    let field = &answer["files"][url.display().to_string()];
    assert_eq!(field["sha256"], sha256(s.values.db_url.as_bytes())?, "{answer}");
    assert_eq!(field["mode"], 0o600);
    assert_eq!(std::fs::metadata(&s.dir)?.permissions().mode() & 0o777, 0o700);

    // The runtime replaced the wrapper in the same process (exec): its command line
    // is the runtime's own, and holds no value.
    let pid = answer["pid"].as_u64().ok_or_else(|| anyhow!("no pid: {answer}"))?;
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline"))?;
    let script = if runtime == Runtime::Node {
        "index.mjs"
    } else {
        "runtime.py"
    };
    assert!(
        String::from_utf8_lossy(&cmdline).contains(script),
        "pid {pid} is the runtime"
    );
    for (i, value) in s.values.all().iter().enumerate() {
        assert!(
            !cmdline.windows(value.len()).any(|w| w == value.as_bytes()),
            "value #{i} in the runtime's cmdline"
        );
    }

    // SHUTDOWN removes the files.
    s.emulator.shutdown(ShutdownReason::Spindown).await;
    assert!(!db_json.exists() && !url.exists(), "files removed at SHUTDOWN");
    s.assert_no_value_in_logs();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_function_reads_its_secrets_from_process_env_and_a_file() -> Result<()> {
    check_runtime_reads_everything(Runtime::Node).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_function_reads_its_secrets_from_os_environ_and_a_file() -> Result<()> {
    check_runtime_reads_everything(Runtime::Python).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_custom_runtime_bootstrap_uses_exec_and_the_wrapper_variable_is_ignored() -> Result<()> {
    // AWS_LAMBDA_EXEC_WRAPPER is set too: were it run on a custom runtime, the wrapper
    // would get no command and fail the init.
    let s = start_with_mappings(Runtime::CustomExec, Mode::OnDemand, &[]).await?;
    let url = s.file("url");
    let answer = s.read(&["DATABASE_URL", "STRIPE_KEY"], &[&url]).await?;
    assert_eq!(answer["runtime"], "python");
    assert_eq!(answer["env"]["DATABASE_URL"], sha256(s.values.db_url.as_bytes())?);
    assert_eq!(answer["env"]["STRIPE_KEY"], sha256(s.values.stripe.as_bytes())?);
    assert_eq!(
        answer["files"][url.display().to_string()]["sha256"],
        sha256(s.values.db_url.as_bytes())?
    );
    s.emulator.shutdown(ShutdownReason::Spindown).await;
    s.assert_no_value_in_logs();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_next_wrapper_runs_with_the_runtime_command_line_and_our_variables() -> Result<()> {
    let next_dir = tempfile::Builder::new().prefix("next-wrapper-").tempdir()?;
    let next = next_dir.path().join("next");
    std::fs::write(&next, "#!/bin/sh\nexport CHAINED_BY_NEXT=yes\nexec \"$@\"\n")?;
    std::fs::set_permissions(&next, std::fs::Permissions::from_mode(0o755))?;
    let extra = [("SECRETS_SIDECAR_EXEC_WRAPPER_NEXT", next.display().to_string())];
    let s = start_with_mappings(Runtime::Python, Mode::OnDemand, &extra).await?;
    let answer = s.read(&["CHAINED_BY_NEXT", "DATABASE_URL"], &[]).await?;
    assert_eq!(answer["runtime"], "python", "{answer}");
    assert_eq!(
        answer["env"]["CHAINED_BY_NEXT"],
        sha256(b"yes")?,
        "the next wrapper ran"
    );
    assert_eq!(answer["env"]["DATABASE_URL"], sha256(s.values.db_url.as_bytes())?);
    s.emulator.shutdown(ShutdownReason::Spindown).await;
    s.assert_no_value_in_logs();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_id_fails_the_init_naming_the_variable_and_the_id() -> Result<()> {
    let env = [(
        "SECRETS_SIDECAR_ENV",
        format!("DATABASE_URL=secretsmanager:{DB_SECRET}#url PAYMENTS_KEY=secretsmanager:app/no-such-secret"),
    )];
    let s = Setup::start(Runtime::Node, Mode::OnDemand, &env).await?;
    let why = s
        .emulator
        .init()
        .await
        .err()
        .ok_or_else(|| anyhow!("the init succeeded"))?;
    assert!(why.contains("Runtime.SecretUnavailable"), "{why}");
    let reported = s.emulator.trace().into_iter().any(|t| {
        matches!(t.what, Trace::ErrorReported { ref source, ref error_type, .. }
            if source == "runtime" && error_type == "Runtime.SecretUnavailable")
    });
    assert!(reported, "the wrapper posted runtime/init/error");
    let line = s
        .emulator
        .logs()
        .wait_for(Duration::from_secs(5), |l| l.contains("secrets-sidecar exec:"))
        .await?;
    assert!(
        line.contains("PAYMENTS_KEY") && line.contains("secretsmanager:app/no-such-secret"),
        "{line}"
    );
    assert!(line.contains("ResourceNotFound"), "says why: {line}");
    s.assert_no_value_in_logs();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn files_are_replaced_atomically_on_rotation_and_symlinks_are_not_followed() -> Result<()> {
    // A symlink planted where a file goes, pointing at a file of someone else's.
    let dir = scratch_dir();
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let victim = dir.join("victim");
    std::fs::write(&victim, b"not yours")?;
    std::os::unix::fs::symlink(&victim, dir.join("url"))?;

    let mut env = Setup::mappings(&dir);
    env.extend([
        ("SECRETS_MANAGER_TTL", "2".to_owned()),
        ("SECRETS_SIDECAR_REFRESH_AHEAD", "0.5".to_owned()),
    ]);
    let mut s = Setup::start(Runtime::Python, Mode::OnDemand, &env).await?;
    s.dir = dir;
    let url = s.file("url");
    let first = s.read(&["DATABASE_URL"], &[&url]).await?;
    let v1 = sha256(s.values.db_url.as_bytes())?;
    assert_eq!(first["files"][url.display().to_string()]["sha256"], v1);
    assert_eq!(std::fs::read(&victim)?, b"not yours", "the symlink was not followed");
    assert!(std::fs::symlink_metadata(&url)?.file_type().is_file());
    let inode = std::fs::metadata(&url)?.ino();
    let held = std::fs::File::open(&url)?;

    // Rotate; each invoke's refresh pass (before the sidecar's next event/next) may
    // bring the new version, and the file follows it. Wait for that, invoke by invoke.
    let rotated_url = format!(
        "postgres://app:rotated-{}@db.internal/app",
        uuid::Uuid::new_v4().simple()
    );
    s.moto
        .put_secret_value(DB_SECRET, &json!({ "url": rotated_url, "user": "app" }).to_string())
        .await?;
    let v2 = sha256(rotated_url.as_bytes())?;
    let deadline = Instant::now() + Duration::from_secs(30);
    let answer = loop {
        let answer = s.read(&["DATABASE_URL"], &[&url]).await?;
        if answer["files"][url.display().to_string()]["sha256"] == v2 {
            break answer;
        }
        if Instant::now() > deadline {
            bail!("the file never got the rotated value: {answer}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // Replaced, not rewritten in place: a new inode, and a reader holding the old
    // file still reads the whole old value.
    assert_ne!(std::fs::metadata(&url)?.ino(), inode);
    assert_eq!(std::fs::metadata(&url)?.permissions().mode() & 0o777, 0o600);
    let mut old = Vec::new();
    std::io::Read::read_to_end(&mut &held, &mut old)?;
    assert_eq!(sha256(&old)?, v1);
    let leftovers: Vec<String> = std::fs::read_dir(&s.dir)?
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".tmp"))
        .collect();
    assert!(leftovers.is_empty(), "temporary files left: {leftovers:?}");
    // The variable keeps the value it started with: rotations reach variables at
    // the next environment start only.
    assert_eq!(answer["env"]["DATABASE_URL"], v1);

    s.emulator.shutdown(ShutdownReason::Spindown).await;
    assert!(
        !url.exists() && !s.file("db.json").exists(),
        "files removed at SHUTDOWN"
    );
    assert_eq!(std::fs::read(&victim)?, b"not yours");
    let lines = s.emulator.logs().lines();
    assert!(!lines.iter().any(|l| l.contains(&rotated_url)));
    s.assert_no_value_in_logs();
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn snapstart_refuses_variables_and_writes_files_only_after_the_restore() -> Result<()> {
    // Variables: the init fails, pointing to the HTTP API.
    let env = [(
        "SECRETS_SIDECAR_ENV",
        format!("DATABASE_URL=secretsmanager:{DB_SECRET}#url"),
    )];
    let s = Setup::start(Runtime::Node, Mode::SnapStart, &env).await?;
    let why = s
        .emulator
        .init()
        .await
        .err()
        .ok_or_else(|| anyhow!("the init succeeded"))?;
    assert!(why.contains("Runtime.SnapStartUnsupported"), "{why}");
    let line = s
        .emulator
        .logs()
        .wait_for(Duration::from_secs(5), |l| l.contains("secrets-sidecar exec:"))
        .await?;
    for needle in ["SnapStart", "snapshot", "/secretsmanager/get", "SDK"] {
        assert!(line.contains(needle), "{needle}: {line}");
    }
    drop(s);

    // Files: nothing on disk in the snapshot; written after the restore.
    let dir = scratch_dir();
    let files = [(
        "SECRETS_SIDECAR_FILES",
        format!("{}/url=secretsmanager:{DB_SECRET}#url", dir.display()),
    )];
    let mut s = Setup::start(Runtime::Node, Mode::SnapStart, &files).await?;
    s.dir = dir;
    let url = s.file("url");
    s.emulator.init().await.map_err(anyhow::Error::msg)?;
    s.emulator
        .snapshot(&[s.values.db_url.as_bytes()])
        .await
        .map_err(anyhow::Error::msg)?;
    assert!(!url.exists(), "no file before the restore");
    s.emulator.restore(Duration::ZERO).await.map_err(anyhow::Error::msg)?;
    s.read(&[], &[]).await?;
    s.emulator.settle().await;
    assert_eq!(sha256(&std::fs::read(&url)?)?, sha256(s.values.db_url.as_bytes())?);
    s.emulator.shutdown(ShutdownReason::Spindown).await;
    assert!(!url.exists());
    s.assert_no_value_in_logs();
    Ok(())
}

/// The EMF specification's JSON schema (CloudWatch User Guide, "Specification:
/// Embedded metric format"), written out from its prose and its published schema.
const EMF_SCHEMA: &str = r##"{
  "type": "object",
  "title": "Root Node",
  "required": ["_aws"],
  "properties": {
    "_aws": {
      "$id": "#/properties/_aws",
      "type": "object",
      "title": "Metadata",
      "required": ["Timestamp", "CloudWatchMetrics"],
      "properties": {
        "Timestamp": {"type": "integer", "title": "The Timestamp Schema", "minimum": 0},
        "LogGroupName": {"type": "string", "minLength": 1},
        "CloudWatchMetrics": {
          "type": "array",
          "title": "MetricDirectives",
          "items": {
            "type": "object",
            "title": "MetricDirective",
            "required": ["Namespace", "Dimensions", "Metrics"],
            "properties": {
              "Namespace": {"type": "string", "minLength": 1, "maxLength": 1024},
              "Dimensions": {
                "type": "array",
                "title": "The Dimensions Schema",
                "minItems": 1,
                "items": {
                  "type": "array",
                  "title": "DimensionSet",
                  "minItems": 0,
                  "maxItems": 30,
                  "items": {"type": "string", "minLength": 1, "maxLength": 250}
                }
              },
              "Metrics": {
                "type": "array",
                "title": "MetricDefinitions",
                "maxItems": 100,
                "items": {
                  "type": "object",
                  "title": "MetricDefinition",
                  "required": ["Name"],
                  "properties": {
                    "Name": {"type": "string", "minLength": 1, "maxLength": 1024},
                    "Unit": {
                      "type": "string",
                      "enum": ["Seconds", "Microseconds", "Milliseconds", "Bytes", "Kilobytes", "Megabytes",
                               "Gigabytes", "Terabytes", "Bits", "Kilobits", "Megabits", "Gigabits", "Terabits",
                               "Percent", "Count", "Bytes/Second", "Kilobytes/Second", "Megabytes/Second",
                               "Gigabytes/Second", "Terabytes/Second", "Bits/Second", "Kilobits/Second",
                               "Megabits/Second", "Gigabits/Second", "Terabits/Second", "Count/Second", "None"]
                    },
                    "StorageResolution": {"type": "integer", "enum": [1, 60]}
                  }
                }
              }
            }
          }
        }
      }
    }
  }
}"##;

/// Validates `doc` against [`EMF_SCHEMA`] with the `jsonschema` package of the
/// project's venv (pinned in requirements.txt), plus the rules the schema cannot
/// say: every dimension and metric a directive names is a member of the root, and
/// metric values are numbers.
fn validate_emf(doc: &Value) -> Result<()> {
    let venv = harness::venv::ensure()?;
    let python = venv.join("bin/python");
    let script = "import json, sys, jsonschema\n\
                  doc, schema = json.loads(sys.argv[1]), json.loads(sys.argv[2])\n\
                  jsonschema.Draft7Validator.check_schema(schema)\n\
                  jsonschema.validate(doc, schema, cls=jsonschema.Draft7Validator)\n";
    let out = std::process::Command::new(python)
        .args(["-c", script, &doc.to_string(), EMF_SCHEMA])
        .output()?;
    if !out.status.success() {
        bail!("not valid EMF: {}", String::from_utf8_lossy(&out.stderr));
    }
    for directive in doc["_aws"]["CloudWatchMetrics"].as_array().into_iter().flatten() {
        for set in directive["Dimensions"].as_array().into_iter().flatten() {
            for name in set.as_array().into_iter().flatten() {
                let name = name.as_str().unwrap_or_default();
                if !doc[name].is_string() {
                    bail!("dimension {name} is not a string member of the root");
                }
            }
        }
        for metric in directive["Metrics"].as_array().into_iter().flatten() {
            let name = metric["Name"].as_str().unwrap_or_default();
            if !doc[name].is_number() {
                bail!("metric {name} is not a number member of the root");
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn emf_lines_are_valid_embedded_metric_format_in_both_log_formats() -> Result<()> {
    // The validator is real: it refuses a document without a namespace.
    let broken = json!({"_aws": {"Timestamp": 1, "CloudWatchMetrics": [{"Dimensions": [[]], "Metrics": []}]}});
    assert!(validate_emf(&broken).is_err(), "a broken document passed");

    for format in ["Text", "JSON"] {
        let extra = [
            ("SECRETS_SIDECAR_EMF", "true".to_owned()),
            ("AWS_LAMBDA_LOG_FORMAT", format.to_owned()),
        ];
        let s = start_with_mappings(Runtime::Node, Mode::OnDemand, &extra).await?;
        s.read(&["DATABASE_URL"], &[]).await?;
        s.emulator.shutdown(ShutdownReason::Spindown).await;
        let line = s
            .emulator
            .logs()
            .wait_for(Duration::from_secs(5), |l| {
                l.starts_with("[secrets-sidecar] {") && l.contains("\"_aws\"")
            })
            .await?;
        let doc: Value = serde_json::from_str(line.trim_start_matches("[secrets-sidecar] "))?;
        validate_emf(&doc).with_context(|| format!("{format}: {line}"))?;
        assert_eq!(doc["_aws"]["CloudWatchMetrics"][0]["Namespace"], "SecretsSidecar");
        assert_eq!(doc["FunctionName"], "exec-env");
        // The wrapper's four requests (two variables, two files) in the one line.
        assert!(doc["Requests"].as_u64() >= Some(4), "{format}: {line}");
        assert_eq!(doc["level"].is_string(), format == "JSON", "{format}: {line}");
        // Counts only: no id, no value.
        assert!(!line.contains(DB_SECRET) && !line.contains(STRIPE_PARAMETER), "{line}");
        s.assert_no_value_in_logs();
        eprintln!("EMF line ({format} log format), as the function's log shows it:\n{line}");
    }
    Ok(())
}

/// The wrapper's cost at start-up: the median of 20 inits of a Node function with
/// the wrapper (two variables) and 20 without (the same ids prefetched). Run with
/// `cargo test -p harness --test system -- exec_env:: --ignored --nocapture`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a measurement, not a check: run by hand for the figure in docs/env-and-files.md"]
async fn measure_the_wrappers_start_up_time() -> Result<()> {
    const RUNS: usize = 20;
    let ids = format!("secretsmanager:{DB_SECRET} ssm:{STRIPE_PARAMETER}");
    let mut medians = Vec::new();
    for (runtime, env) in [
        (Runtime::NodeBare, vec![("SECRETS_SIDECAR_PREFETCH", ids.clone())]),
        (
            Runtime::Node,
            vec![(
                "SECRETS_SIDECAR_ENV",
                format!("DATABASE_URL=secretsmanager:{DB_SECRET}#url STRIPE_KEY=ssm:{STRIPE_PARAMETER}"),
            )],
        ),
    ] {
        let s = Setup::start(runtime, Mode::OnDemand, &env).await?;
        let mut inits = Vec::with_capacity(RUNS);
        for _ in 0..RUNS {
            inits.push(s.emulator.init().await.map_err(anyhow::Error::msg)?);
            s.emulator.shutdown(ShutdownReason::Spindown).await;
        }
        inits.sort();
        let median = inits[RUNS / 2];
        eprintln!(
            "{runtime:?}: median init {median:?} (min {:?}, max {:?})",
            inits[0],
            inits[RUNS - 1]
        );
        medians.push(median);
    }
    eprintln!(
        "the wrapper adds {:?} to the median init",
        medians[1].saturating_sub(medians[0])
    );
    Ok(())
}
