//! The documentation: README.md and every page under docs/.
//!
//! Documentation drifts silently, so three things are checked here:
//! - every fenced block under docs/ that is code a user runs (shell, Node.js, Python,
//!   Rust) is either a `<!-- snippet:NAME -->`, run below, or a `<!-- not-run: REASON
//!   -->` (it needs real AWS, Docker, a release build); a block with neither fails;
//! - every snippet (README and docs/) runs against a real sidecar seeded through moto
//!   and prints what this file expects of it, under both places Lambda puts the token;
//! - every relative link resolves to a file, and its `#anchor` to a heading there.
//!
//! The configuration table is checked against the code in the extension crate
//! (`extension/src/config/tests.rs`), where the variables are read.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::time::Duration;

use harness::moto::{Caller, Moto, ParamType};
use harness::sidecar::SidecarBuilder;
use harness::world::{seed, Keys};

/// Fence languages of code a user runs: each such block under docs/ needs a marker.
const CODE: &[&str] = &[
    "sh",
    "bash",
    "shell",
    "console",
    "js",
    "javascript",
    "mjs",
    "ts",
    "typescript",
    "python",
    "py",
    "rust",
];
/// Languages this test can run as a snippet.
const RUNNABLE: &[&str] = &["sh", "js", "python", "rust"];

#[derive(Clone, Debug, PartialEq, Eq)]
enum Marker {
    Snippet(String),
    NotRun(String),
}

#[derive(Clone, Debug)]
struct Block {
    /// `docs/http-api.md:18`, for messages.
    at: String,
    lang: String,
    body: String,
    marker: Option<Marker>,
}

/// A marker comment alone on its line.
fn marker(line: &str) -> Option<Marker> {
    let inner = line.trim().strip_prefix("<!--")?.strip_suffix("-->")?.trim();
    if let Some(name) = inner.strip_prefix("snippet:") {
        return Some(Marker::Snippet(name.trim().to_owned()));
    }
    inner
        .strip_prefix("not-run:")
        .map(|reason| Marker::NotRun(reason.trim().to_owned()))
}

/// The fenced blocks of one Markdown file, each with the marker on the line before
/// it (blank lines between are allowed). A marker followed by anything else, and a
/// fence never closed, are errors.
fn blocks(file: &str, text: &str) -> Result<Vec<Block>, String> {
    let lines: Vec<&str> = text.lines().collect();
    let mut out = Vec::new();
    let mut pending: Option<(Marker, usize)> = None;
    let mut i = 0;
    while i < lines.len() {
        let line = lines[i];
        let trimmed = line.trim_start();
        if let Some(lang) = trimmed.strip_prefix("```") {
            let indent = line.len() - trimmed.len();
            let open = i + 1;
            let mut body = Vec::new();
            i += 1;
            loop {
                let Some(l) = lines.get(i) else {
                    return Err(format!("{file}:{open}: the code fence is never closed"));
                };
                if l.trim() == "```" {
                    break;
                }
                let strip = l.len() - l.trim_start().len();
                body.push(&l[strip.min(indent)..]);
                i += 1;
            }
            out.push(Block {
                at: format!("{file}:{open}"),
                lang: lang.trim().to_owned(),
                body: body.join("\n") + "\n",
                marker: pending.take().map(|(m, _)| m),
            });
        } else if let Some(m) = marker(line) {
            if let Some((_, at)) = &pending {
                return Err(format!("{file}:{at}: a marker with no code block after it"));
            }
            pending = Some((m, i + 1));
        } else if !line.trim().is_empty() {
            if let Some((_, at)) = pending.take() {
                return Err(format!("{file}:{at}: a marker with no code block after it"));
            }
        }
        i += 1;
    }
    if let Some((_, at)) = pending {
        return Err(format!("{file}:{at}: a marker with no code block after it"));
    }
    Ok(out)
}

/// What is wrong with a file's blocks. `docs_page`: under docs/, where every block of
/// code needs a marker (the README's opening block is `make demo` / `make test`
/// themselves, run by every CI run).
fn problems(blocks: &[Block], docs_page: bool) -> Vec<String> {
    let mut out = Vec::new();
    for b in blocks {
        match &b.marker {
            None if docs_page && b.lang.is_empty() => {
                out.push(format!("{}: a code block without a language", b.at));
            }
            None if docs_page && CODE.contains(&b.lang.as_str()) => out.push(format!(
                "{}: a {} block is neither <!-- snippet:NAME --> (run by this test) nor \
                 <!-- not-run: REASON -->",
                b.at, b.lang
            )),
            None => {}
            Some(Marker::NotRun(reason)) if reason.is_empty() => {
                out.push(format!("{}: not-run needs a reason", b.at));
            }
            Some(Marker::NotRun(_)) => {}
            Some(Marker::Snippet(name)) => {
                if !RUNNABLE.contains(&b.lang.as_str()) {
                    out.push(format!(
                        "{}: snippet {name} is {:?}, not one of {RUNNABLE:?}",
                        b.at, b.lang
                    ));
                }
                if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
                    out.push(format!("{}: snippet name {name:?} is not a plain word", b.at));
                }
            }
        }
    }
    out
}

fn repo() -> PathBuf {
    harness::venv::repo_root()
}

/// README.md and every docs/*.md, as (path relative to the repository, text).
fn pages() -> Vec<(String, String)> {
    let root = repo();
    let mut names = vec!["README.md".to_owned()];
    let mut docs: Vec<String> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ exists")
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.ends_with(".md"))
        .map(|n| format!("docs/{n}"))
        .collect();
    docs.sort();
    names.extend(docs);
    names
        .into_iter()
        .map(|n| {
            let text = std::fs::read_to_string(root.join(&n)).unwrap_or_else(|e| panic!("{n}: {e}"));
            (n, text)
        })
        .collect()
}

/// Every block of every page, or the first parse error.
fn all_blocks() -> Vec<(String, Vec<Block>)> {
    pages()
        .into_iter()
        .map(|(name, text)| {
            let b = blocks(&name, &text).unwrap_or_else(|e| panic!("{e}"));
            (name, b)
        })
        .collect()
}

#[test]
fn every_code_block_in_docs_is_run_or_says_why_not() {
    let mut found = Vec::new();
    let mut snippets = BTreeSet::new();
    let mut docs_blocks = 0;
    for (name, blocks) in all_blocks() {
        let docs_page = name.starts_with("docs/");
        docs_blocks += usize::from(docs_page) * blocks.len();
        found.extend(problems(&blocks, docs_page));
        for b in &blocks {
            if let Some(Marker::Snippet(s)) = &b.marker {
                if !snippets.insert(s.clone()) {
                    found.push(format!("{}: snippet {s} is defined twice", b.at));
                }
                if expectation(s).is_none() {
                    found.push(format!("{}: snippet {s} has no expectation in this test", b.at));
                }
            }
        }
    }
    assert!(docs_blocks > 10, "too few blocks found under docs/: {docs_blocks}");
    assert!(found.is_empty(), "documentation code blocks:\n{}", found.join("\n"));
    for name in EXPECTED {
        assert!(
            snippets.contains(*name),
            "snippet {name} is expected but no page has it"
        );
    }
}

#[test]
fn the_block_check_refuses_an_unmarked_or_misplaced_block() {
    let page = "# P\n\n```sh\ncurl localhost:2773/ping\n```\n";
    let b = blocks("p.md", page).expect("parses");
    assert_eq!(problems(&b, true).len(), 1, "unmarked shell under docs/");
    assert!(problems(&b, false).is_empty(), "the README's blocks need no marker");
    let marked = "<!-- not-run: needs AWS -->\n```sh\naws s3 ls\n```\n\n<!-- snippet:x -->\n   ```js\n   1\n   ```\n";
    let b = blocks("p.md", marked).expect("parses");
    assert!(problems(&b, true).is_empty(), "{:?}", problems(&b, true));
    assert_eq!(b[1].body, "1\n", "indented fences are dedented");
    assert_eq!(b[1].marker, Some(Marker::Snippet("x".into())));
    assert_eq!(
        problems(&blocks("p.md", "```\nx\n```\n").expect("parses"), true).len(),
        1,
        "no language"
    );
    assert_eq!(
        problems(
            &blocks("p.md", "<!-- not-run: -->\n```sh\nx\n```\n").expect("parses"),
            true
        )
        .len(),
        1
    );
    assert!(
        blocks("p.md", "<!-- snippet:x -->\ntext\n```sh\nx\n```\n").is_err(),
        "marker then prose"
    );
    assert!(blocks("p.md", "```sh\nx\n").is_err(), "unclosed fence");
    let yaml = blocks("p.md", "```yaml\nA: b\n```\n").expect("parses");
    assert!(problems(&yaml, true).is_empty(), "data blocks need no marker");
}

/// A GitHub heading anchor: lower case, punctuation dropped, spaces to `-`.
fn slug(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// The anchors of a Markdown text (headings outside code fences).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut fenced = false;
    let mut out = BTreeSet::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
        } else if !fenced && line.starts_with('#') {
            out.insert(slug(line.trim_start_matches('#')));
        }
    }
    out
}

/// The relative link targets of a Markdown text, outside code fences.
fn links(text: &str) -> Vec<String> {
    let mut fenced = false;
    let mut out = Vec::new();
    for line in text.lines() {
        if line.trim_start().starts_with("```") {
            fenced = !fenced;
            continue;
        }
        if fenced {
            continue;
        }
        let mut rest = line;
        while let Some(at) = rest.find("](") {
            let after = &rest[at + 2..];
            let Some(end) = after.find(')') else { break };
            let target = &after[..end];
            if !target.contains("://") && !target.starts_with("mailto:") {
                out.push(target.to_owned());
            }
            rest = &after[end..];
        }
    }
    out
}

#[test]
fn every_relative_link_resolves() {
    let root = repo();
    let mut broken = Vec::new();
    let mut checked = 0;
    for (name, text) in pages() {
        let dir = Path::new(&name).parent().unwrap_or(Path::new("")).to_path_buf();
        for target in links(&text) {
            checked += 1;
            let (path, anchor) = target.split_once('#').unwrap_or((&target, ""));
            let file = if path.is_empty() {
                root.join(&name)
            } else {
                root.join(&dir).join(path)
            };
            let Ok(linked) = std::fs::read_to_string(&file) else {
                if !file.exists() {
                    broken.push(format!("{name}: ({target}): no such file"));
                }
                continue;
            };
            if !anchor.is_empty() && !anchors(&linked).contains(anchor) {
                broken.push(format!("{name}: ({target}): no heading #{anchor} there"));
            }
        }
    }
    assert!(checked > 30, "too few links found: {checked}");
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn the_link_check_reads_anchors_as_github_does() {
    assert_eq!(
        slug(" Standalone: ECS, EKS, EC2, a laptop"),
        "standalone-ecs-eks-ec2-a-laptop"
    );
    assert_eq!(slug(" Already using the AWS SDK?"), "already-using-the-aws-sdk");
    assert_eq!(slug(" Prometheus: `/metrics`"), "prometheus-metrics");
    assert_eq!(
        links("see [a](b.md#c) and [x](https://e.org) [d](#e)"),
        ["b.md#c", "#e"]
    );
    assert!(links("```\n[a](b.md)\n```\n").is_empty(), "code is not a link");
}

/// The role the `curl-role` snippet names, and what its account holds as `app/db`.
const ROLE: &str = "arn:aws:iam::210987654321:role/secret-reader";
const ROLE_DB: &str = r#"{"url":"postgres://reader@db.other-account"}"#;
/// Every snippet the pages must have; each is run below.
const EXPECTED: &[&str] = &["node", "python", "rust", "boto3", "curl", "curl-role"];

/// What a snippet must print, and whether it runs under SnapStart's token too (the
/// SDK snippet signs with the function's credentials, whose session token under
/// SnapStart comes from the container credentials endpoint this test does not serve).
struct Expectation {
    prints: Vec<String>,
    snapstart: bool,
}

fn expectation(name: &str) -> Option<Expectation> {
    let keys = Keys::default();
    let appid = format!("got appid ({} chars)", keys.openweathermap.len());
    let (prints, snapstart) = match name {
        "node" | "rust" => (vec![appid], true),
        "python" => (
            vec![format!("got the Dark Sky key ({} chars)", keys.darksky.len())],
            true,
        ),
        "boto3" => (vec![appid], false),
        "curl" => (
            vec![
                keys.openweathermap.clone(),
                keys.darksky.clone(),
                "AWSPREVIOUS".to_owned(),
                "\"Version\":3".to_owned(),
                "secrets_sidecar_requests_total".to_owned(),
            ],
            true,
        ),
        "curl-role" => (vec!["postgres://reader@db.other-account".to_owned()], true),
        _ => return None,
    };
    Some(Expectation { prints, snapstart })
}

/// Runs a command with a deadline; its stdout, or a failure naming its output.
async fn run(what: &str, cmd: &mut tokio::process::Command) -> anyhow::Result<String> {
    cmd.kill_on_drop(true);
    let out = tokio::time::timeout(Duration::from_secs(60), cmd.output())
        .await
        .map_err(|_| anyhow::anyhow!("{what}: still running after 60 s"))??;
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    );
    anyhow::ensure!(
        out.status.success(),
        "{what} failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(stdout)
}

/// Shell snippets run with `curl` made strict: an error status fails the snippet
/// (as written, `curl` would print the error body and succeed), and each answer ends
/// its line.
const SHELL_PRELUDE: &str = "set -euo pipefail\n\
curl() { command curl --fail-with-body --silent --show-error --max-time 10 \"$@\"; echo; }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_snippet_runs_against_a_real_sidecar() -> anyhow::Result<()> {
    let snippets: Vec<(String, Block)> = all_blocks()
        .into_iter()
        .flat_map(|(_, blocks)| blocks)
        .filter_map(|b| match &b.marker {
            Some(Marker::Snippet(name)) => Some((name.clone(), b.clone())),
            _ => None,
        })
        .collect();
    assert!(snippets.len() >= EXPECTED.len(), "snippets found: {}", snippets.len());

    let keys = Keys::default();
    let moto = Moto::start().await?;
    seed(&moto, &keys).await?;
    // What the shell snippets name: a rotated secret, a parameter with three versions,
    // and the same name in the account of the role they assume.
    moto.create_secret("app/db", r#"{"url":"postgres://app@db-1"}"#).await?;
    moto.put_secret_value("app/db", r#"{"url":"postgres://app@db-2"}"#)
        .await?;
    for color in ["red", "green", "blue"] {
        moto.put_parameter("/app/color", color, ParamType::String).await?;
    }
    let role_key = moto.assume_role(ROLE).await?;
    moto.create_secret_as(
        Caller {
            access_key: &role_key,
            region: "us-east-1",
        },
        "app/db",
        ROLE_DB,
    )
    .await?;

    let builder = SidecarBuilder::new(harness::bins::ensure(
        "secrets-sidecar",
        "secrets-sidecar",
        "SIDECAR_BIN",
    )?)
    .endpoint(&moto.endpoint())
    .var("SECRETS_SIDECAR_ALLOW", &format!("* role:{ROLE}"));
    // As in Lambda, the token is the session token of the credentials the sidecar
    // holds, so an SDK signing with the function's credentials is recognised.
    let token = builder.token.clone();
    let sc = builder.var("AWS_SESSION_TOKEN", &token).spawn().await?;
    let endpoint = format!("http://localhost:{}", sc.port);
    let python = harness::venv::tool("python");

    let dir = tempfile::tempdir()?;
    let platforms: [(&str, [(&str, &str); 2]); 2] = [
        (
            "session token",
            [("AWS_SESSION_TOKEN", &token), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", "")],
        ),
        (
            "SnapStart",
            [("AWS_SESSION_TOKEN", ""), ("AWS_CONTAINER_AUTHORIZATION_TOKEN", &token)],
        ),
    ];
    for (name, block) in &snippets {
        let expect = expectation(name).ok_or_else(|| anyhow::anyhow!("snippet {name}: no expectation"))?;
        // Not the snippet's own name: `boto3.py` would shadow the module it imports.
        let file = dir.path().join(format!("snippet_{}", name.replace('-', "_")));
        // How the snippet runs: a program and its arguments.
        let program: (PathBuf, Vec<PathBuf>) = match block.lang.as_str() {
            "js" => {
                std::fs::write(file.with_extension("mjs"), &block.body)?;
                ("node".into(), vec![file.with_extension("mjs")])
            }
            "python" => {
                std::fs::write(file.with_extension("py"), &block.body)?;
                (python.clone(), vec![file.with_extension("py")])
            }
            "rust" => {
                std::fs::write(file.with_extension("rs"), &block.body)?;
                let mut rustc = tokio::process::Command::new("rustc");
                rustc
                    .args(["--edition", "2021", "-O", "-o"])
                    .arg(&file)
                    .arg(file.with_extension("rs"));
                run(&format!("{}: rustc", block.at), &mut rustc).await?;
                (file.clone(), vec![])
            }
            "sh" => {
                // The pages show the default port; this sidecar listens on a free one.
                anyhow::ensure!(
                    block.body.contains("localhost:2773"),
                    "{}: a shell snippet names http://localhost:2773",
                    block.at
                );
                let body = block.body.replace("localhost:2773", &format!("localhost:{}", sc.port));
                std::fs::write(file.with_extension("sh"), format!("{SHELL_PRELUDE}{body}"))?;
                ("bash".into(), vec![file.with_extension("sh")])
            }
            other => anyhow::bail!("{}: cannot run {other}", block.at),
        };
        for (platform, tokens) in &platforms {
            if *platform == "SnapStart" && !expect.snapstart {
                continue;
            }
            // A function's environment, nothing of the host's AWS set-up: the port,
            // the token, the function's credentials and region (Lambda sets both region
            // variables), and the SDK endpoints at the sidecar.
            let mut cmd = tokio::process::Command::new(&program.0);
            cmd.args(&program.1).env_clear().envs(tokens.iter().copied()).envs([
                ("PATH", std::env::var("PATH").unwrap_or_default().as_str()),
                ("HOME", dir.path().to_str().unwrap_or("/tmp")),
                ("PARAMETERS_SECRETS_EXTENSION_HTTP_PORT", &sc.port.to_string()),
                ("AWS_ENDPOINT_URL_SECRETS_MANAGER", &endpoint),
                ("AWS_ENDPOINT_URL_SSM", &endpoint),
                ("AWS_ACCESS_KEY_ID", "testing"),
                ("AWS_SECRET_ACCESS_KEY", "testing"),
                ("AWS_REGION", "us-east-1"),
                ("AWS_DEFAULT_REGION", "us-east-1"),
                ("AWS_EC2_METADATA_DISABLED", "true"),
            ]);
            let what = format!("snippet {name} ({}, {platform})", block.at);
            let out = run(&what, &mut cmd).await?;
            for needle in &expect.prints {
                anyhow::ensure!(
                    out.contains(needle.as_str()),
                    "{what}: {needle:?} not in its output:\n{out}"
                );
            }
        }
    }
    Ok(())
}
