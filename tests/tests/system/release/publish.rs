//! `deploy/publish-layer.py` against moto's Lambda API: two regions by two
//! architectures published with the right attributes and printed as the ARN table; a
//! rerun publishes nothing; a region that fails leaves the others published and a rerun
//! finishes it; a missing artifact or a checksum that does not match SHA256SUMS
//! publishes nothing anywhere.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

use harness::moto::Moto;
use harness::proxy::{Fault, FaultProxy};
use harness::venv::{repo_root, tool};
use serde_json::Value;

const REGIONS: [&str; 2] = ["us-east-1", "eu-west-1"];
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn python() -> PathBuf {
    harness::venv::ensure().expect("venv");
    tool("python")
}

/// A release directory with a small layer zip per architecture and its SHA256SUMS.
fn release_dir() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("tempdir");
    let make = r#"
import hashlib, os, sys, zipfile
dist, version = sys.argv[1], sys.argv[2]
lines = []
for arch in ("x86_64", "arm64"):
    name = f"secrets-sidecar-{version}-layer-{arch}.zip"
    with zipfile.ZipFile(os.path.join(dist, name), "w") as z:
        z.writestr("extensions/secrets-sidecar", f"a {arch} sidecar")
    with open(os.path.join(dist, name), "rb") as f:
        lines.append(f"{hashlib.sha256(f.read()).hexdigest()}  {name}\n")
open(os.path.join(dist, "SHA256SUMS"), "w").writelines(lines)
"#;
    let out = Command::new(python())
        .args(["-c", make])
        .arg(dir.path())
        .arg(VERSION)
        .output()
        .expect("python");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    dir
}

fn zip_path(dist: &Path, arch: &str) -> PathBuf {
    dist.join(format!("secrets-sidecar-{VERSION}-layer-{arch}.zip"))
}

/// Runs `script` (a Python file or `-c` code) with the venv's Python, fake credentials
/// and no AWS configuration files, bounded in time.
fn run_python(args: &[&str], extra: &[&std::ffi::OsStr]) -> Output {
    let mut cmd = Command::new(python());
    cmd.args(args)
        .args(extra)
        .env("AWS_ACCESS_KEY_ID", "testing")
        .env("AWS_SECRET_ACCESS_KEY", "testing")
        .env_remove("AWS_SESSION_TOKEN")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .env_remove("AWS_ENDPOINT_URL_LAMBDA")
        .env("AWS_CONFIG_FILE", "/dev/null")
        .env("AWS_SHARED_CREDENTIALS_FILE", "/dev/null")
        .env("AWS_EC2_METADATA_DISABLED", "true");
    let child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let child = child.unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(Duration::from_secs(60)) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{cmd:?} did not finish within 60 s");
        }
    }
}

/// `deploy/publish-layer.py --dist DIST --regions us-east-1,eu-west-1 --endpoint-url URL ARGS…`.
fn publish(dist: &Path, endpoint: &str, args: &[&str]) -> Output {
    let script = repo_root().join("deploy/publish-layer.py");
    let mut all = vec![
        script.to_str().expect("utf-8"),
        "--regions",
        "us-east-1,eu-west-1",
        "--endpoint-url",
        endpoint,
    ];
    all.extend_from_slice(args);
    run_python(&all, &[std::ffi::OsStr::new("--dist"), dist.as_os_str()])
}

/// What moto holds: for each region, each layer's versions (number, description,
/// architectures, runtimes, ARN), and the public grant of each version, as JSON.
fn layers(moto: &Moto) -> Value {
    let code = r#"
import json, sys, boto3
out = {}
for region in sys.argv[2:]:
    c = boto3.client("lambda", region_name=region, endpoint_url=sys.argv[1])
    for name in ("secrets-sidecar", "secrets-sidecar-arm64"):
        versions = c.list_layer_versions(LayerName=name)["LayerVersions"]
        for v in versions:
            try:
                v["Policy"] = json.loads(c.get_layer_version_policy(LayerName=name, VersionNumber=v["Version"])["Policy"])
            except c.exceptions.ResourceNotFoundException:
                v["Policy"] = None
        out[f"{region} {name}"] = sorted(versions, key=lambda v: v["Version"])
print(json.dumps(out, default=str))
"#;
    let endpoint = moto.endpoint();
    let mut args = vec!["-c", code, endpoint.as_str()];
    args.extend(REGIONS);
    let out = run_python(&args, &[]);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    serde_json::from_slice(&out.stdout).expect("JSON")
}

fn versions<'a>(held: &'a Value, region: &str, name: &str) -> &'a Vec<Value> {
    held[format!("{region} {name}")].as_array().expect("versions")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn sha256_of(path: &Path) -> String {
    let out = Command::new("sha256sum").arg(path).output().expect("sha256sum");
    text(&out.stdout).split_whitespace().next().expect("sum").to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn publishes_each_region_and_architecture_once_and_a_rerun_publishes_nothing() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let dist = release_dir();
    let first = publish(dist.path(), &moto.endpoint(), &["--public"]);
    assert!(first.status.success(), "{}", text(&first.stderr));

    let held = layers(&moto);
    let table = text(&first.stdout);
    for region in REGIONS {
        for (arch, name) in [("x86_64", "secrets-sidecar"), ("arm64", "secrets-sidecar-arm64")] {
            let v = versions(&held, region, name);
            assert_eq!(v.len(), 1, "{region} {name}: {v:?}");
            let v = &v[0];
            let sha = sha256_of(&zip_path(dist.path(), arch));
            let description = v["Description"].as_str().expect("description");
            assert_eq!(description, format!("secrets-sidecar {VERSION} ({arch}) sha256:{sha}"));
            assert_eq!(v["CompatibleArchitectures"], serde_json::json!([arch]));
            let runtimes = v["CompatibleRuntimes"].as_array().expect("runtimes");
            assert!(
                runtimes.len() <= 15 && runtimes.iter().any(|r| r == "provided.al2023"),
                "{runtimes:?}"
            );
            assert_eq!(v["LicenseInfo"], "MIT");
            let arn = v["LayerVersionArn"].as_str().expect("arn");
            assert!(arn.starts_with(&format!("arn:aws:lambda:{region}:")), "{arn}");
            assert!(table.contains(&format!("`{arn}`")), "{arn} not in\n{table}");
            let statement = &v["Policy"]["Statement"][0];
            assert_eq!(statement["Action"], "lambda:GetLayerVersion", "{v}");
            assert_eq!(statement["Principal"], "*", "{v}");
        }
        assert!(
            table.lines().any(|l| l.starts_with(&format!("| {region} | `arn:"))),
            "{table}"
        );
    }
    assert_eq!(
        table.lines().count(),
        2 + REGIONS.len(),
        "header, rule, one row per region:\n{table}"
    );

    // The same release again: every version found unchanged, nothing new, same table.
    let again = publish(dist.path(), &moto.endpoint(), &["--public"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert_eq!(
        text(&again.stderr).matches("unchanged").count(),
        4,
        "{}",
        text(&again.stderr)
    );
    assert!(!text(&again.stderr).contains("published"), "{}", text(&again.stderr));
    assert_eq!(layers(&moto), held);
    assert_eq!(text(&again.stdout), table);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failing_region_leaves_the_others_published_and_a_rerun_finishes_it() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let proxy = FaultProxy::start(moto.port).await?;
    let dist = release_dir();
    proxy.inject_in("eu-west-1", None, Fault::ServerError, None);

    let broken = publish(dist.path(), &proxy.endpoint(), &[]);
    assert_eq!(broken.status.code(), Some(1), "{}", text(&broken.stderr));
    let stderr = text(&broken.stderr);
    assert!(
        stderr.contains("failed in eu-west-1 (x86_64), eu-west-1 (arm64)"),
        "{stderr}"
    );
    assert!(
        text(&broken.stdout).contains("| eu-west-1 | (failed) | (failed) |"),
        "{}",
        text(&broken.stdout)
    );
    let held = layers(&moto);
    for name in ["secrets-sidecar", "secrets-sidecar-arm64"] {
        assert_eq!(versions(&held, "us-east-1", name).len(), 1, "{name}");
        assert!(versions(&held, "eu-west-1", name).is_empty(), "{name}");
    }
    assert!(proxy.count_in("Other", "eu-west-1") > 0, "the failing region was tried");

    proxy.clear();
    let rerun = publish(dist.path(), &proxy.endpoint(), &[]);
    assert!(rerun.status.success(), "{}", text(&rerun.stderr));
    let log = text(&rerun.stderr);
    assert!(
        log.contains("us-east-1 x86_64: unchanged") && log.contains("us-east-1 arm64: unchanged"),
        "{log}"
    );
    assert!(
        log.contains("eu-west-1 x86_64: published") && log.contains("eu-west-1 arm64: published"),
        "{log}"
    );
    let after = layers(&moto);
    for region in REGIONS {
        for name in ["secrets-sidecar", "secrets-sidecar-arm64"] {
            let v = versions(&after, region, name);
            assert_eq!(v.len(), 1, "{region} {name}: one version, none twice");
        }
    }
    assert_eq!(
        versions(&after, "us-east-1", "secrets-sidecar"),
        versions(&held, "us-east-1", "secrets-sidecar"),
        "the first region's version is the one published before the failure"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_missing_artifact_or_a_wrong_checksum_publishes_nothing() -> anyhow::Result<()> {
    let moto = Moto::start().await?;
    let nothing_anywhere = |moto: &Moto| {
        let held = layers(moto);
        for (key, v) in held.as_object().expect("object") {
            assert!(v.as_array().expect("versions").is_empty(), "{key} was published: {v}");
        }
    };

    let dist = release_dir();
    let arm = zip_path(dist.path(), "arm64");
    let listed = sha256_of(&arm);
    std::fs::write(&arm, b"not the zip that was checksummed")?;
    let out = publish(dist.path(), &moto.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(2));
    let stderr = text(&out.stderr);
    let actual = sha256_of(&arm);
    assert!(
        stderr.contains(&format!("SHA-256 {actual} does not match SHA256SUMS ({listed})")),
        "{stderr}"
    );
    assert!(stderr.contains("Nothing was published"), "{stderr}");
    assert!(out.stdout.is_empty(), "no table");
    nothing_anywhere(&moto);

    let dist = release_dir();
    std::fs::remove_file(zip_path(dist.path(), "x86_64"))?;
    let out = publish(dist.path(), &moto.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("is missing (SHA256SUMS lists it)"),
        "{}",
        text(&out.stderr)
    );
    nothing_anywhere(&moto);

    let dist = release_dir();
    std::fs::remove_file(dist.path().join("SHA256SUMS"))?;
    let out = publish(dist.path(), &moto.endpoint(), &[]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        text(&out.stderr).contains("SHA256SUMS is missing"),
        "{}",
        text(&out.stderr)
    );
    nothing_anywhere(&moto);

    let dist = release_dir();
    let out = publish(dist.path(), &moto.endpoint(), &["--arch", "sparc"]);
    assert_eq!(out.status.code(), Some(2), "argparse's usage error");
    assert!(
        text(&out.stderr).contains("'sparc' is not one of x86_64, arm64"),
        "{}",
        text(&out.stderr)
    );
    nothing_anywhere(&moto);
    Ok(())
}
