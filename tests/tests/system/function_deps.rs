//! The weather function must not depend on the AWS SDK: it reads its keys from the
//! sidecar over localhost. This fails as soon as any `aws-sdk-*`, `aws-config` or
//! `aws-smithy-*` crate enters its dependency tree.

use std::process::Command;

#[test]
fn no_aws_sdk_in_the_function_tree() {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned());
    let manifest = harness::venv::repo_root().join("Cargo.toml");
    let out = Command::new(cargo)
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            "weather-function",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("cargo tree runs");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let tree = String::from_utf8_lossy(&out.stdout);
    assert!(
        tree.lines().any(|l| l.starts_with("lambda_http")),
        "the tree was read: {tree}"
    );
    let sdk: Vec<&str> = tree
        .lines()
        .filter(|l| l.starts_with("aws-sdk-") || l.starts_with("aws-config") || l.starts_with("aws-smithy-"))
        .collect();
    assert!(sdk.is_empty(), "AWS SDK crates in the function's tree: {sdk:?}");

    // The same command does see the SDK in the extension's tree, so the check can fail.
    let out = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_owned()))
        .args([
            "tree",
            "--offline",
            "--locked",
            "-e",
            "normal",
            "--prefix",
            "none",
            "-p",
            "secrets-sidecar",
            "--manifest-path",
        ])
        .arg(&manifest)
        .output()
        .expect("cargo tree runs");
    assert!(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("aws-sdk-secretsmanager")));
}
