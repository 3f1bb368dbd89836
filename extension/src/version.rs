//! What this binary is: the version from Cargo.toml and the commit it was built from
//! (recorded by build.rs), printed by `secrets-sidecar --version` and logged once at
//! start-up, so a deployed layer can be matched to its release and its SBOM.

/// The crate's version (the workspace's, from Cargo.toml).
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// The full commit hash the binary was built from, or "unknown".
pub const COMMIT: &str = env!("SECRETS_SIDECAR_COMMIT");

/// `secrets-sidecar 0.1.0 (commit 0123abcd…)`: the `--version` line.
pub fn line() -> String {
    format!("secrets-sidecar {VERSION} (commit {COMMIT})")
}
