//! `make bench`: measures the sidecar against baselines measured in the same run and
//! writes BENCHMARKS.md (see `report`). Sections: 1 warm hit (`warm`), 2 cold start
//! (`cold`), 3 cold key under concurrency (`burst`), 4 refresh-ahead (`refresh`),
//! 5 cost (`cost`), 6 memory and size (`memory`), 7 where the time goes (`profile`),
//! 8 a fleet under an API quota (`fleet`), 9 an AWS SDK call on every invoke, straight to
//! AWS and through the sidecar (`sdk`).
//!
//! `bench --smoke` runs every section in seconds (part of `make test`: it checks the
//! benchmarks still run, never their numbers) and writes to `--out` (default
//! `target/bench-smoke.md`), leaving BENCHMARKS.md alone. `--only 8` (or `1,7`) runs
//! those sections and keeps the others of the file it rewrites.
//!
//! `bench --guard` (part of `make test`) measures only what cannot flake (instructions
//! per hit, the layer's size) and fails past the budgets in `bench/budgets.txt`
//! (`guard`); `--sidecar FILE`, `--layer FILE` and `--budgets FILE` override its inputs.

mod burst;
mod cold;
mod cost;
mod fleet;
mod guard;
mod load;
mod memory;
mod profile;
mod refresh;
mod report;
mod sdk;
mod warm;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{anyhow, Result};

/// The binaries under test, from the same target directory as this one.
pub struct Tools {
    pub sidecar: PathBuf,
    pub baseline: PathBuf,
    pub probe_runtime: PathBuf,
    pub probe_extension: PathBuf,
    /// `--profile profiling` builds (symbols kept), when present.
    pub profiling_sidecar: Option<PathBuf>,
    pub profiling_baseline: Option<PathBuf>,
}

fn tools() -> Result<Tools> {
    let find = |name: &str, var: &str| harness::bins::find(name, var);
    let exe = std::env::current_exe()?;
    let profiling = exe
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.join("profiling"))
        .filter(|d| d.is_dir());
    let prof = |name: &str| profiling.as_ref().map(|d| d.join(name)).filter(|p| p.is_file());
    Ok(Tools {
        sidecar: find("secrets-sidecar", "SIDECAR_BIN")?,
        baseline: find("baseline-server", "BASELINE_BIN")?,
        probe_runtime: find("probe-runtime", "PROBE_RUNTIME_BIN")?,
        probe_extension: find("probe-extension", "PROBE_EXTENSION_BIN")?,
        // PROFILING_SIDECAR_BIN: another build to profile (an older commit's, to compare).
        profiling_sidecar: std::env::var_os("PROFILING_SIDECAR_BIN")
            .map(PathBuf::from)
            .or_else(|| prof("secrets-sidecar")),
        profiling_baseline: prof("baseline-server"),
    })
}

struct Opts {
    smoke: bool,
    /// `--guard`: the budgets check instead of the benchmarks.
    guard: Option<guard::Inputs>,
    out: PathBuf,
    /// Sections to run (1–9); all when empty.
    only: Vec<u8>,
}

fn opts() -> Result<Opts> {
    let mut smoke = false;
    let mut guard = false;
    let (mut sidecar, mut layer, mut budgets) = (None, None, None);
    let mut out = None;
    let mut only = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--smoke" => smoke = true,
            "--guard" => guard = true,
            "--sidecar" => sidecar = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--sidecar needs a file"))?)),
            "--budgets" => budgets = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--budgets needs a file"))?)),
            "--layer" => layer = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--layer needs a file"))?)),
            "--out" => out = Some(PathBuf::from(args.next().ok_or_else(|| anyhow!("--out needs a file"))?)),
            "--only" => {
                let list = args
                    .next()
                    .ok_or_else(|| anyhow!("--only needs section numbers, e.g. 1,7"))?;
                for n in list.split(',') {
                    only.push(
                        n.trim()
                            .parse()
                            .map_err(|_| anyhow!("--only: '{n}' is not a section number"))?,
                    );
                }
            }
            other => {
                return Err(anyhow!(
                    "unknown argument {other} (use --smoke, --out FILE, --only 1,7, or --guard [--sidecar FILE] [--layer FILE] [--budgets FILE])"
                ))
            }
        }
    }
    let root = harness::venv::repo_root();
    let out = out.unwrap_or_else(|| {
        if smoke {
            root.join("target/bench-smoke.md")
        } else {
            root.join("BENCHMARKS.md")
        }
    });
    // By default the guard measures what `./layer.zip.sh` built and packed.
    let target = std::env::current_exe()?
        .parent()
        .and_then(|d| d.parent())
        .map(|t| t.to_path_buf())
        .ok_or_else(|| anyhow!("cannot tell the target directory from this program's path"))?;
    let guard = guard.then(|| guard::Inputs {
        budgets: budgets.unwrap_or_else(|| root.join("bench/budgets.txt")),
        sidecar: sidecar.unwrap_or_else(|| target.join("x86_64-unknown-linux-gnu/release/secrets-sidecar")),
        layer: layer.unwrap_or_else(|| root.join("dist/layer.zip")),
    });
    Ok(Opts {
        smoke,
        guard,
        out,
        only,
    })
}

fn now_utc() -> String {
    std::process::Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default()
}

async fn run() -> Result<bool> {
    let opts = opts()?;
    if let Some(inputs) = &opts.guard {
        return guard::run(inputs).await;
    }
    let tools = tools()?;
    let mut report = report::Report::new(&report::machine_line(), opts.smoke, &now_utc());
    let mut all_ran = true;
    let mut record = |report: &mut report::Report, title: &str, result: Result<String>| match result {
        Ok(body) => {
            println!("== {title}\n{body}");
            report.section(title, &body);
        }
        Err(e) => {
            all_ran = false;
            eprintln!("== {title}: FAILED: {e:#}");
            report.section(title, &format!("This section failed to run: {e:#}"));
        }
    };
    let wanted = |n: u8| opts.only.is_empty() || opts.only.contains(&n);
    if wanted(1) {
        record(&mut report, "1. Warm hit", warm::run(&tools, opts.smoke).await);
    }
    if wanted(2) {
        record(&mut report, "2. Cold start", cold::run(&tools, opts.smoke).await);
    }
    if wanted(3) {
        record(
            &mut report,
            "3. Cold key under concurrency",
            burst::run(&tools, opts.smoke).await,
        );
    }
    if wanted(4) || wanted(5) {
        let refreshed = refresh::run(opts.smoke).await;
        let cost = refreshed
            .as_ref()
            .map(cost::run)
            .map_err(|e| anyhow!("needs section 4: {e:#}"));
        record(&mut report, "4. Refresh-ahead", refreshed.map(|m| m.text));
        record(&mut report, "5. Cost", cost);
    }
    if wanted(6) {
        record(&mut report, "6. Memory and size", memory::run(&tools, opts.smoke).await);
    }
    if wanted(7) {
        record(
            &mut report,
            "7. Where the time goes",
            profile::run(&tools, opts.smoke).await,
        );
    }
    if wanted(8) {
        record(
            &mut report,
            "8. A fleet under an API quota",
            fleet::run(&tools, opts.smoke).await,
        );
    }
    if wanted(9) {
        record(
            &mut report,
            "9. An AWS SDK call on every invoke",
            sdk::run(&tools, opts.smoke).await,
        );
    }
    if let Some(dir) = opts.out.parent() {
        std::fs::create_dir_all(dir)?;
    }
    // A partial run replaces its own sections and keeps the rest of the file.
    let text = match std::fs::read_to_string(&opts.out) {
        Ok(previous) if !opts.only.is_empty() => report.merged_with(&previous),
        _ => report.text,
    };
    std::fs::write(&opts.out, text)?;
    println!("wrote {}", opts.out.display());
    Ok(all_ran)
}

#[tokio::main]
async fn main() -> ExitCode {
    match run().await {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}
