//! What a release is made of: the binary names its version and commit (`--version`, and
//! one log line at start-up), `release.sh` refuses what it cannot build, and (ignored by
//! default, run by `make release-check`) two release builds of one commit, from two
//! clones and two target directories, give byte-identical artifacts: layer zip,
//! standalone tarball, SBOMs and SHA256SUMS, each checked for what it must hold.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use harness::net::free_port;
use harness::sidecar::SidecarBuilder;
use harness::venv::repo_root;

/// The workspace version (every crate shares it, the harness too).
const VERSION: &str = env!("CARGO_PKG_VERSION");

fn git(args: &[&str], dir: &Path) -> String {
    let out = Command::new("git").args(args).current_dir(dir).output().expect("git");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

fn sidecar_bin() -> PathBuf {
    harness::bins::ensure("secrets-sidecar", "secrets-sidecar", "SIDECAR_BIN").expect("sidecar binary")
}

/// Runs `cmd` to its end in a process group of its own; the whole group is killed when
/// it is not done after `limit`.
fn run_bounded(cmd: &mut Command, limit: Duration) -> Output {
    use std::os::unix::process::CommandExt;
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    let pid = nix::unistd::Pid::from_raw(i32::try_from(child.id()).expect("pid"));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(limit) {
        Ok(out) => out.expect("wait"),
        Err(_) => {
            let _ = nix::sys::signal::killpg(pid, nix::sys::signal::Signal::SIGKILL);
            panic!("{cmd:?} did not finish within {limit:?}");
        }
    }
}

#[test]
fn version_flag_prints_version_and_commit_and_nothing_else() {
    let root = repo_root();
    let commit = git(&["rev-parse", "HEAD"], &root);
    let port = free_port();
    // Everything standalone mode needs to start is set: `--version` must not start it.
    let out = run_bounded(
        Command::new(sidecar_bin())
            .arg("--version")
            .env_remove("AWS_LAMBDA_RUNTIME_API")
            .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", port.to_string())
            .env("SECRETS_SIDECAR_TOKEN", "a-token-of-enough-length")
            .env("AWS_REGION", "us-east-1"),
        Duration::from_secs(10),
    );
    assert!(out.status.success(), "{:?}", out.status);
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        format!("secrets-sidecar {VERSION} (commit {commit})\n"),
        "the binary must be built from HEAD"
    );
    assert!(
        out.stderr.is_empty(),
        "nothing logged: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    std::net::TcpListener::bind(("127.0.0.1", port)).expect("the port was never taken");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_sidecar_logs_its_version_and_commit_once_at_start_up() -> anyhow::Result<()> {
    let commit = git(&["rev-parse", "HEAD"], &repo_root());
    // No prefetch: nothing is asked of this (closed) upstream.
    let sc = SidecarBuilder::new(sidecar_bin())
        .endpoint("http://127.0.0.1:9")
        .spawn()
        .await?;
    sc.wait_ready(Duration::from_secs(10)).await?;
    for _ in 0..3 {
        assert_eq!(sc.get("/ping").await?.status, 200);
    }
    let versioned = |l: &&String| l.contains(VERSION) && l.contains(&commit);
    let lines = sc.proc.logs.lines();
    assert_eq!(lines.iter().filter(versioned).count(), 1, "{lines:#?}");
    let first = lines.iter().position(|l| versioned(&l)).expect("the version line");
    assert!(
        lines[..first].iter().all(|l| !l.contains("listening")),
        "the version comes before anything else is reported: {lines:#?}"
    );
    Ok(())
}

#[test]
fn release_script_refuses_bad_arguments_and_builds_nothing() {
    let root = repo_root();
    let out_dir = tempfile::tempdir().expect("tempdir");
    let dest = out_dir.path().join("release");
    for (args, says) in [
        (vec!["--arch", "sparc"], "--arch must be x86_64 or arm64, not 'sparc'"),
        (vec!["--arch"], "--arch needs a value"),
        (vec!["--bogus"], "unknown argument '--bogus'"),
    ] {
        let out = run_bounded(
            Command::new(root.join("release.sh"))
                .arg("--out")
                .arg(&dest)
                .args(&args),
            Duration::from_secs(20),
        );
        assert!(!out.status.success(), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(says), "{args:?}: {stderr}");
        assert!(!stderr.contains("building"), "{args:?} started a build: {stderr}");
        assert!(!dest.exists(), "{args:?} wrote {}", dest.display());
    }
}

/// `release.sh --arch x86_64` from `src` into `out`, with `target` as the target directory.
fn release(src: &Path, out: &Path, target: &Path) -> String {
    let started = Instant::now();
    let output = run_bounded(
        Command::new(src.join("release.sh"))
            .args(["--arch", "x86_64", "--out"])
            .arg(out)
            .current_dir(src)
            .env("CARGO_TARGET_DIR", target)
            .env_remove("SECRETS_SIDECAR_COMMIT"),
        Duration::from_secs(40 * 60),
    );
    assert!(
        output.status.success(),
        "release.sh in {} failed:\n{}",
        src.display(),
        String::from_utf8_lossy(&output.stderr)
    );
    eprintln!("release from {} took {:.0?}", src.display(), started.elapsed());
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn files(dir: &Path) -> BTreeSet<String> {
    std::fs::read_dir(dir)
        .expect("read_dir")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect()
}

fn sh(cmd: &str, dir: &Path) -> String {
    let out = Command::new("bash")
        .args(["-c", cmd])
        .current_dir(dir)
        .output()
        .expect("bash");
    assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
#[ignore = "two release builds, one of them cold (minutes): `make release-check`"]
fn two_release_builds_of_one_commit_are_byte_identical_and_complete() {
    let root = repo_root();
    let commit = git(&["rev-parse", "HEAD"], &root);
    let work = tempfile::tempdir().expect("tempdir");
    // The first build from the checkout in its usual target directory (warm after
    // `make package-check`) when it holds nothing uncommitted, else from a clone; the
    // second always from a fresh clone at another path into a new target directory.
    let dirty = !git(&["status", "--porcelain", "--untracked-files=no"], &root).is_empty();
    let clone = |name: &str| -> PathBuf {
        let dir = work.path().join(name);
        git(
            &[
                "clone",
                "-q",
                "--no-local",
                root.to_str().expect("utf-8"),
                dir.to_str().expect("utf-8"),
            ],
            &root,
        );
        git(&["checkout", "-q", &commit], &dir);
        dir
    };
    let usual_target = std::env::var_os("CARGO_TARGET_DIR").map_or_else(|| root.join("target"), PathBuf::from);
    let (first_src, first_target) = if dirty {
        (clone("first"), work.path().join("target-first"))
    } else {
        (root.clone(), usual_target)
    };
    let second_src = clone("second");
    let (a, b) = (work.path().join("a"), work.path().join("b"));
    let sums_a = release(&first_src, &a, &first_target);
    let sums_b = release(&second_src, &b, &work.path().join("target-second"));

    let expected: BTreeSet<String> = [
        format!("secrets-sidecar-{VERSION}-layer-x86_64.zip"),
        format!("secrets-sidecar-{VERSION}-layer-x86_64.zip.cdx.json"),
        format!("secrets-sidecar-{VERSION}-linux-x86_64.tar.gz"),
        format!("secrets-sidecar-{VERSION}-linux-x86_64.tar.gz.cdx.json"),
        "SHA256SUMS".to_owned(),
    ]
    .into();
    assert_eq!(files(&a), expected);
    assert_eq!(files(&b), expected);
    for name in &expected {
        let (x, y) = (
            std::fs::read(a.join(name)).expect("a"),
            std::fs::read(b.join(name)).expect("b"),
        );
        assert!(
            x == y,
            "{name} differs between the two builds ({} and {} bytes)",
            x.len(),
            y.len()
        );
    }
    assert_eq!(sums_a, sums_b);
    assert_eq!(sums_a, std::fs::read_to_string(a.join("SHA256SUMS")).expect("sums"));
    sh("sha256sum --quiet -c SHA256SUMS", &a);
    assert_eq!(sums_a.lines().count(), 4, "{sums_a}");

    // The layer: exactly what Lambda mounts under /opt, executable.
    let zip = a.join(format!("secrets-sidecar-{VERSION}-layer-x86_64.zip"));
    let listing = sh(&format!("zipinfo '{}'", zip.display()), &a);
    for entry in ["extensions/secrets-sidecar", "secrets-sidecar-exec"] {
        assert!(
            listing
                .lines()
                .any(|l| l.starts_with("-rwxr-xr-x") && l.ends_with(&format!(" {entry}"))),
            "{entry} in {listing}"
        );
    }
    assert_eq!(sh(&format!("zipinfo -1 '{}' | wc -l", zip.display()), &a).trim(), "2");

    // The tarball: one directory, fixed owner and time, and a binary that says what it is.
    let name = format!("secrets-sidecar-{VERSION}-linux-x86_64");
    let tar = sh(&format!("tar -tvzf {name}.tar.gz"), &a);
    let entries: Vec<&str> = tar.lines().map(|l| l.rsplit(' ').next().unwrap_or("")).collect();
    assert_eq!(
        entries,
        [
            format!("{name}/"),
            format!("{name}/CHANGELOG.md"),
            format!("{name}/LICENSE"),
            format!("{name}/secrets-sidecar"),
            format!("{name}/secrets-sidecar-exec"),
        ]
    );
    assert!(
        tar.lines().all(|l| l.contains(" 0/0 ") && l.contains("1980-01-01")),
        "{tar}"
    );
    sh(&format!("tar -xzf {name}.tar.gz"), &a);
    let version = run_bounded(
        Command::new(a.join(&name).join("secrets-sidecar")).arg("--version"),
        Duration::from_secs(10),
    );
    assert_eq!(
        String::from_utf8_lossy(&version.stdout),
        format!("secrets-sidecar {VERSION} (commit {commit})\n")
    );

    // The SBOM: every crate linked into the binary, at its version, and no machine path.
    let sbom_text = std::fs::read_to_string(a.join(format!("{name}.tar.gz.cdx.json"))).expect("sbom");
    for path in [&root, &first_src, &second_src, work.path()] {
        assert!(
            !sbom_text.contains(path.to_str().expect("utf-8")),
            "the SBOM names {}",
            path.display()
        );
    }
    let sbom: serde_json::Value = serde_json::from_str(&sbom_text).expect("SBOM JSON");
    assert_eq!(sbom["bomFormat"], "CycloneDX");
    assert_eq!(sbom["metadata"]["component"]["name"], "secrets-sidecar");
    assert_eq!(sbom["metadata"]["component"]["version"], VERSION);
    let listed: BTreeSet<String> = sbom["components"]
        .as_array()
        .expect("components")
        .iter()
        .map(|c| {
            format!(
                "{} v{}",
                c["name"].as_str().unwrap_or(""),
                c["version"].as_str().unwrap_or("")
            )
        })
        .collect();
    let linked = sh(
        "cargo tree --locked --offline -p secrets-sidecar -e normal,no-proc-macro \
         --target x86_64-unknown-linux-gnu --prefix none --no-dedupe",
        &root,
    );
    let linked: BTreeSet<String> = linked
        .lines()
        .filter_map(|l| {
            let mut words = l.split_whitespace();
            Some(format!("{} {}", words.next()?, words.next()?))
        })
        .filter(|c| !c.starts_with("secrets-sidecar "))
        .collect();
    assert!(linked.len() > 50, "{linked:?}");
    let missing: Vec<&String> = linked.difference(&listed).collect();
    assert!(missing.is_empty(), "linked but not in the SBOM: {missing:?}");
}
