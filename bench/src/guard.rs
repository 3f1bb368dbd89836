//! `bench --guard` (part of `make test`): the figures that cannot flake, held to the
//! budgets in `bench/budgets.txt`. Instructions per warm hit on the extension API are
//! counted by callgrind on the binary the layer ships, pinned to one CPU (callgrind
//! counts instructions, not time: the same binary and requests give the same figure
//! to a few instructions; the least of two runs is taken); the layer zip's size is read off the file. A figure
//! more than 5 % over its budget fails with both numbers printed; one more than 5 %
//! under it is reported so the budget can be lowered. Wall-clock figures stay in
//! `make bench`, never here.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail, Context, Result};
use harness::moto::Moto;

use crate::profile;

/// How far past its budget a figure may go before the guard fails.
const TOLERANCE: f64 = 0.05;

/// Runs whose least count is the figure. On an idle machine the runs agree to a few
/// instructions; a machine busy with other work shifts when requests arrive against
/// the runtime's timers, and one run beside two compilations counted 6 % fewer. The
/// least of two keeps a passing run passing whatever runs beside it.
const RUNS: usize = 2;

/// Requests counted per callgrind run: enough that the start and stop, measured apart
/// and subtracted, leave the per-hit figure steady to well under 1 %.
const HITS: usize = 2000;

/// The budgets file: one `name value` per line, `#` comments.
#[derive(Debug, PartialEq)]
pub struct Budgets {
    pub instructions_per_hit: u64,
    pub layer_zip_bytes: u64,
}

pub fn parse_budgets(text: &str) -> Result<Budgets> {
    let (mut instructions, mut layer) = (None, None);
    for (n, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let (name, value) = line
            .split_once(char::is_whitespace)
            .ok_or_else(|| anyhow!("line {}: expected `name value`, got `{line}`", n + 1))?;
        let value: u64 = value
            .trim()
            .replace('_', "")
            .parse()
            .map_err(|_| anyhow!("line {}: `{}` is not a whole number", n + 1, value.trim()))?;
        let slot = match name {
            "instructions_per_hit" => &mut instructions,
            "layer_zip_bytes" => &mut layer,
            other => bail!("line {}: unknown budget `{other}`", n + 1),
        };
        if slot.replace(value).is_some() {
            bail!("line {}: `{name}` is given twice", n + 1);
        }
    }
    Ok(Budgets {
        instructions_per_hit: instructions.ok_or_else(|| anyhow!("no `instructions_per_hit` budget"))?,
        layer_zip_bytes: layer.ok_or_else(|| anyhow!("no `layer_zip_bytes` budget"))?,
    })
}

/// One figure against its budget.
#[derive(Debug)]
pub struct Check {
    pub name: &'static str,
    pub measured: f64,
    pub budget: u64,
}

#[derive(Debug, PartialEq)]
pub enum Verdict {
    Over,
    Within,
    WellUnder,
}

impl Check {
    pub fn verdict(&self) -> Verdict {
        let budget = self.budget as f64;
        if self.measured > budget * (1.0 + TOLERANCE) {
            Verdict::Over
        } else if self.measured < budget * (1.0 - TOLERANCE) {
            Verdict::WellUnder
        } else {
            Verdict::Within
        }
    }

    pub fn line(&self) -> String {
        let ratio = self.measured / self.budget as f64;
        let said = match self.verdict() {
            Verdict::Over => "FAIL: more than 5 % over budget",
            Verdict::Within => "ok",
            Verdict::WellUnder => "ok, more than 5 % under budget: lower it in bench/budgets.txt",
        };
        format!(
            "{}: measured {:.0}, budget {} ({:.3}× the budget): {said}",
            self.name, self.measured, self.budget, ratio
        )
    }
}

pub struct Inputs {
    pub budgets: PathBuf,
    pub sidecar: PathBuf,
    pub layer: PathBuf,
}

/// Measures both figures and prints each against its budget; `Ok(false)` when one is over.
pub async fn run(inputs: &Inputs) -> Result<bool> {
    let text =
        std::fs::read_to_string(&inputs.budgets).with_context(|| format!("reading {}", inputs.budgets.display()))?;
    let budgets = parse_budgets(&text).with_context(|| format!("in {}", inputs.budgets.display()))?;
    for (what, path) in [("sidecar binary", &inputs.sidecar), ("layer zip", &inputs.layer)] {
        if !path.is_file() {
            bail!(
                "the {what} {} is missing: build it with ./layer.zip.sh (make package-check)",
                path.display()
            );
        }
    }
    let layer_bytes = std::fs::metadata(&inputs.layer)?.len();
    let per_hit = instructions_per_hit(&inputs.sidecar).await?;
    let checks = [
        Check {
            name: "instructions per warm hit (extension API, callgrind)",
            measured: per_hit,
            budget: budgets.instructions_per_hit,
        },
        Check {
            name: "layer zip bytes",
            measured: layer_bytes as f64,
            budget: budgets.layer_zip_bytes,
        },
    ];
    let mut ok = true;
    for c in &checks {
        println!("guard: {}", c.line());
        ok &= c.verdict() != Verdict::Over;
    }
    println!(
        "guard: sidecar {}, layer {}, {HITS} hits per callgrind run",
        inputs.sidecar.display(),
        inputs.layer.display()
    );
    Ok(ok)
}

async fn instructions_per_hit(sidecar: &Path) -> Result<f64> {
    let dir = std::env::temp_dir().join(format!("bench-guard-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let moto = Moto::start().await?;
    profile::create_profiled_secret(&moto).await?;
    let mut counts = Vec::new();
    let mut failure = None;
    for _ in 0..RUNS {
        match profile::sidecar_per_hit(sidecar, &moto, &dir, HITS).await {
            Ok(m) => counts.push(m.per_hit),
            Err(e) => failure = Some(e),
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
    if let Some(e) = failure {
        return Err(e);
    }
    let shown: Vec<String> = counts.iter().map(|c| format!("{c:.0}")).collect();
    println!("guard: instructions per hit in {RUNS} runs: {}", shown.join(", "));
    Ok(counts.into_iter().fold(f64::INFINITY, f64::min))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn budgets_parse_and_bad_files_say_where() {
        let b = parse_budgets("# c\ninstructions_per_hit 15_100  # why\n\nlayer_zip_bytes 4650000\n").expect("parses");
        assert_eq!(
            b,
            Budgets {
                instructions_per_hit: 15_100,
                layer_zip_bytes: 4_650_000
            }
        );
        let missing = parse_budgets("instructions_per_hit 1")
            .expect_err("must be refused")
            .to_string();
        assert!(missing.contains("layer_zip_bytes"), "{missing}");
        let unknown = parse_budgets("rss 1\n").expect_err("must be refused").to_string();
        assert!(unknown.contains("line 1") && unknown.contains("rss"), "{unknown}");
        let twice = parse_budgets("layer_zip_bytes 1\nlayer_zip_bytes 2\ninstructions_per_hit 1")
            .expect_err("must be refused")
            .to_string();
        assert!(twice.contains("line 2") && twice.contains("twice"), "{twice}");
        assert!(parse_budgets("layer_zip_bytes 4.6MB").is_err());
    }

    #[test]
    fn five_percent_over_the_budget_fails_and_the_line_names_both_numbers() {
        let c = |measured| Check {
            name: "x",
            measured,
            budget: 1000,
        };
        assert_eq!(c(1050.0).verdict(), Verdict::Within);
        assert_eq!(c(1051.0).verdict(), Verdict::Over);
        assert_eq!(c(950.0).verdict(), Verdict::Within);
        assert_eq!(c(949.0).verdict(), Verdict::WellUnder);
        let line = c(1100.0).line();
        assert!(
            line.contains("1100") && line.contains("1000") && line.contains("FAIL"),
            "{line}"
        );
    }
}
