//! The project's Python venv (`.venv`), holding the pinned tools of `requirements.txt`
//! (moto server, cfn-lint). `make venv` creates it; tests create it on first use too,
//! under a file lock so parallel test processes install it once.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{anyhow, Context, Result};

/// The repository root (this crate lives in `tests/`).
///
/// Cargo's runtime `CARGO_MANIFEST_DIR` first (set by `cargo test`, `nextest` and
/// `cargo run`), then the one compiled in, then the working directory's ancestors:
/// a target directory shared by clones at different paths can hand a test a binary
/// compiled in another clone, whose compiled-in path may be gone.
pub fn repo_root() -> PathBuf {
    let is_root = |p: &Path| p.join("requirements.txt").is_file() && p.join("tests").is_dir();
    let from_manifest = |dir: &Path| dir.parent().filter(|p| is_root(p)).map(Path::to_path_buf);
    std::env::var_os("CARGO_MANIFEST_DIR")
        .and_then(|d| from_manifest(Path::new(&d)))
        .or_else(|| from_manifest(Path::new(env!("CARGO_MANIFEST_DIR"))))
        .or_else(|| {
            let cwd = std::env::current_dir().ok()?;
            cwd.ancestors().find(|p| is_root(p)).map(Path::to_path_buf)
        })
        .unwrap_or_else(|| PathBuf::from(".."))
}

pub fn venv_dir() -> PathBuf {
    std::env::var_os("SIDECAR_VENV").map_or_else(|| repo_root().join(".venv"), PathBuf::from)
}

/// Path of an executable inside the venv.
pub fn tool(name: &str) -> PathBuf {
    venv_dir().join("bin").join(name)
}

/// Makes sure the venv exists and matches `requirements.txt`; returns its directory.
pub fn ensure() -> Result<PathBuf> {
    let dir = venv_dir();
    let requirements = repo_root().join("requirements.txt");
    let wanted =
        std::fs::read_to_string(&requirements).with_context(|| format!("reading {}", requirements.display()))?;
    let stamp = dir.join(".requirements");
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(dir);
    }
    std::fs::create_dir_all(&dir)?;
    let lock = std::fs::File::create(dir.with_extension("lock"))?;
    lock.lock()?;
    // Another process may have finished the install while this one waited.
    if std::fs::read_to_string(&stamp).is_ok_and(|s| s == wanted) {
        return Ok(dir);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".to_owned());
    run(Command::new(&python).args(["-m", "venv"]).arg(&dir))?;
    run(Command::new(dir.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "-r"])
        .arg(&requirements))?;
    std::fs::write(&stamp, wanted)?;
    Ok(dir)
}

fn run(cmd: &mut Command) -> Result<()> {
    let status = cmd.status().with_context(|| format!("running {cmd:?}"))?;
    if !status.success() {
        return Err(anyhow!("{cmd:?} failed with {status}"));
    }
    Ok(())
}
