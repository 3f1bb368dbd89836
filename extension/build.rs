//! Records the commit the binary is built from, for `secrets-sidecar --version` and the
//! start-up log line: `SECRETS_SIDECAR_COMMIT` when set (a build from a source tarball,
//! which has no `.git`), else `git rev-parse HEAD`, else "unknown". Only the commit is
//! recorded, never a dirty flag or a time, so two builds of one commit are identical.

use std::path::{Path, PathBuf};
use std::process::Command;

fn main() {
    println!("cargo:rerun-if-env-changed=SECRETS_SIDECAR_COMMIT");
    let commit = std::env::var("SECRETS_SIDECAR_COMMIT")
        .ok()
        .filter(|c| !c.trim().is_empty())
        .or_else(git_head)
        .unwrap_or_else(|| "unknown".to_owned());
    println!("cargo:rustc-env=SECRETS_SIDECAR_COMMIT={}", commit.trim());
}

fn git(args: &[&str]) -> Option<String> {
    let out = Command::new("git").args(args).output().ok()?;
    out.status
        .success()
        .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
}

/// HEAD's commit, and the files whose change moves it (so a new commit rebuilds this
/// crate and nothing else does).
fn git_head() -> Option<String> {
    let commit = git(&["rev-parse", "HEAD"]).filter(|c| c.len() == 40)?;
    if let Some(dir) = git(&["rev-parse", "--absolute-git-dir"]).map(PathBuf::from) {
        watch(&dir.join("HEAD"));
        if let Some(reference) = git(&["symbolic-ref", "-q", "HEAD"]) {
            let common = git(&["rev-parse", "--git-common-dir"]).map(PathBuf::from);
            let common = common.map(|c| if c.is_absolute() { c } else { dir.join(c) });
            for base in [Some(dir.clone()), common].into_iter().flatten() {
                watch(&base.join(&reference));
                watch(&base.join("packed-refs"));
            }
        }
    }
    Some(commit)
}

fn watch(path: &Path) {
    if path.exists() {
        println!("cargo:rerun-if-changed={}", path.display());
    }
}
