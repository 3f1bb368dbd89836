//! Finding the project's binaries (`secrets-sidecar`, later `bootstrap`) from a test
//! or the demo: `SIDECAR_BIN`-style overrides first, then the cargo target directory
//! the running executable lives in.

use std::path::PathBuf;

use anyhow::{anyhow, Result};

/// Path of binary `name`. `override_var` (e.g. `SIDECAR_BIN`) wins when set.
pub fn find(name: &str, override_var: &str) -> Result<PathBuf> {
    if let Some(p) = std::env::var_os(override_var) {
        return Ok(PathBuf::from(p));
    }
    let exe = std::env::current_exe()?;
    // target/<profile>/<exe> for binaries, target/<profile>/deps/<exe> for tests.
    for dir in exe.ancestors().skip(1).take(2) {
        let candidate = dir.join(name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    Err(anyhow!(
        "{name} not found next to {}; build it (cargo build -p {name}) or set {override_var}",
        exe.display()
    ))
}

/// Like [`find`], but builds binary `name` of `package` first when it is missing
/// (a test run of one package does not build the others' binaries).
pub fn ensure(name: &str, package: &str, override_var: &str) -> Result<PathBuf> {
    if let Ok(p) = find(name, override_var) {
        return Ok(p);
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = crate::venv::repo_root().join("Cargo.toml");
    let status = std::process::Command::new(cargo)
        .args(["build", "--offline", "-p", package, "--bin", name, "--manifest-path"])
        .arg(manifest)
        .status()?;
    if !status.success() {
        return Err(anyhow!("building {name} failed"));
    }
    find(name, override_var)
}
