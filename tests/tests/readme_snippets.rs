//! The README's "use it from your own function" snippets (Node.js, Python, Rust),
//! extracted from README.md and run against a real sidecar seeded through moto, so
//! the documentation cannot drift from what works.

use std::path::Path;
use std::process::Command;

use harness::moto::Moto;
use harness::sidecar::SidecarBuilder;
use harness::world::{seed, Keys};

/// The fenced code block that follows `<!-- snippet:NAME -->`.
fn snippet(readme: &str, name: &str) -> String {
    let marker = format!("<!-- snippet:{name} -->");
    let after = &readme[readme.find(&marker).unwrap_or_else(|| panic!("{marker} missing")) + marker.len()..];
    let fence = after.find("```").expect("a code fence");
    let body = fence + after[fence..].find('\n').expect("fence line") + 1;
    let end = body + after[body..].find("\n```").expect("closing fence");
    after[body..end].to_owned()
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("{cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn readme_snippets_read_real_secrets() -> anyhow::Result<()> {
    let readme = std::fs::read_to_string(harness::venv::repo_root().join("README.md"))?;
    let keys = Keys::default();
    let moto = Moto::start().await?;
    seed(&moto, &keys).await?;
    let sc = SidecarBuilder::new(harness::bins::ensure(
        "secrets-sidecar",
        "secrets-sidecar",
        "SIDECAR_BIN",
    )?)
    .endpoint(&moto.endpoint())
    .spawn()
    .await?;
    let dir = tempfile::tempdir()?;
    // Where Lambda puts the token: AWS_SESSION_TOKEN, or under SnapStart (no session
    // token; AWS's emulator sets it empty) AWS_CONTAINER_AUTHORIZATION_TOKEN.
    let platforms: [(&str, [(&str, &str); 2]); 2] = [
        (
            "session token",
            [
                ("AWS_SESSION_TOKEN", &sc.token),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", ""),
            ],
        ),
        (
            "SnapStart",
            [
                ("AWS_SESSION_TOKEN", ""),
                ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &sc.token),
            ],
        ),
    ];
    let path = |name: &str| -> std::path::PathBuf { dir.path().join(name) };
    let write = |file: &Path, text: String| std::fs::write(file, text).expect("write snippet");
    write(&path("snippet.mjs"), snippet(&readme, "node"));
    write(&path("snippet.py"), snippet(&readme, "python"));
    write(&path("snippet.rs"), snippet(&readme, "rust"));
    run(Command::new("rustc")
        .args(["--edition", "2021", "-O", "-o"])
        .arg(path("snippet"))
        .arg(path("snippet.rs")));

    for (platform, vars) in platforms {
        let with_env = |cmd: &mut Command| {
            cmd.envs(vars)
                .env("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", sc.port.to_string());
        };
        let mut node = Command::new("node");
        node.arg(path("snippet.mjs"));
        with_env(&mut node);
        let out = run(&mut node);
        assert_eq!(
            out.trim(),
            format!("got appid ({} chars)", keys.openweathermap.len()),
            "{platform}"
        );

        let mut python = Command::new("python3");
        python.arg(path("snippet.py"));
        with_env(&mut python);
        let out = run(&mut python);
        assert_eq!(
            out.trim(),
            format!("got the Dark Sky key ({} chars)", keys.darksky.len()),
            "{platform}"
        );

        let mut rust = Command::new(path("snippet"));
        with_env(&mut rust);
        let out = run(&mut rust);
        assert_eq!(
            out.trim(),
            format!("got appid ({} chars)", keys.openweathermap.len()),
            "{platform}"
        );
    }
    Ok(())
}
