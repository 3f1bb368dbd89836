//! BENCHMARKS.md: a machine line, then one section per benchmark with its table, the
//! commands that produced it, and what the numbers mean against the target. A run of
//! some sections only (`--only`) keeps the other sections of the file it replaces.

use std::fmt::Write as _;

pub struct Report {
    pub text: String,
}

/// One Markdown table.
pub struct Table {
    header: Vec<String>,
    rows: Vec<Vec<String>>,
}

impl Table {
    pub fn new(header: &[&str]) -> Table {
        Table {
            header: header.iter().map(|h| (*h).to_owned()).collect(),
            rows: Vec::new(),
        }
    }

    pub fn row(&mut self, cells: Vec<String>) {
        self.rows.push(cells);
    }

    pub fn render(&self) -> String {
        let mut out = String::new();
        let _ = writeln!(out, "| {} |", self.header.join(" | "));
        let _ = writeln!(out, "|{}", " --- |".repeat(self.header.len()));
        for r in &self.rows {
            let _ = writeln!(out, "| {} |", r.join(" | "));
        }
        out
    }
}

/// A binary as the report names it: `target/<profile>/<name>`, wherever the target
/// directory of this run happens to be (the report speaks of the build, not the host).
pub fn shown_binary(path: &std::path::Path) -> String {
    let name = |p: Option<&std::path::Path>| {
        p.and_then(|p| p.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default()
    };
    format!("target/{}/{}", name(path.parent()), name(Some(path)))
}

/// What the machine is, read off the machine.
pub fn machine_line() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    let mem_kb: u64 = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines()
                .find(|l| l.starts_with("MemTotal"))
                .and_then(|l| l.split_whitespace().nth(1)?.parse().ok())
        })
        .unwrap_or(0);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let rustc = std::process::Command::new("rustc")
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .unwrap_or_default();
    format!(
        "{cores} cores ({cpu}), {:.0} GiB RAM, Linux {}, {rustc}",
        mem_kb as f64 / 1_048_576.0,
        kernel.trim()
    )
}

impl Report {
    pub fn new(machine: &str, smoke: bool, started: &str) -> Report {
        let mut text = String::from("# Benchmarks\n\n");
        let _ = writeln!(
            text,
            "Produced by `make bench` (`cargo run --release -p bench`) on {started}.\n\n**Machine:** {machine}.\n"
        );
        if smoke {
            text.push_str("**Smoke run** (`bench --smoke`, seconds long, part of `make test`): the figures only show the benchmarks still run; do not read them as results.\n\n");
        }
        text.push_str(
            "Absolute numbers drift on shared machines; every section therefore measures its baseline in the same run and reports ratios. Targets are checked here, never by timed unit tests.\n\n",
        );
        Report { text }
    }

    pub fn section(&mut self, title: &str, body: &str) {
        let _ = writeln!(self.text, "## {title}\n\n{}\n", body.trim_end());
    }

    /// This report with the sections of `previous` (an earlier BENCHMARKS.md) that it
    /// lacks, all in section order, and a line saying which are older; so `--only 8`
    /// refreshes one section without dropping the others.
    pub fn merged_with(&self, previous: &str) -> String {
        let (head, mine) = split_sections(&self.text);
        let (_, theirs) = split_sections(previous);
        let kept: Vec<(u32, &str)> = theirs
            .into_iter()
            .filter(|(n, _)| !mine.iter().any(|(m, _)| m == n))
            .collect();
        if kept.is_empty() {
            return self.text.clone();
        }
        let produced = previous
            .lines()
            .find_map(|l| l.strip_prefix("Produced by "))
            .and_then(|l| l.rsplit_once(" on "))
            .map_or("an earlier run", |(_, when)| when.trim_end_matches('.'));
        // The kept sections may come from another machine: say which.
        let machine = previous
            .lines()
            .find_map(|l| l.strip_prefix("**Machine:** "))
            .map_or(String::new(), |m| format!(" on {}", m.trim_end_matches('.')));
        let numbers: Vec<String> = kept.iter().map(|(n, _)| n.to_string()).collect();
        let mut all: Vec<(u32, &str)> = mine.into_iter().chain(kept).collect();
        all.sort_by_key(|(n, _)| *n);
        let mut out = head.to_owned();
        let _ = writeln!(
            out,
            "Sections {} are kept from the run of {produced}{machine}; this run (`--only`) produced the others.\n",
            numbers.join(", ")
        );
        for (_, text) in all {
            out.push_str(text);
        }
        out
    }
}

/// The text before the first `## ` heading, and each section (heading to the next
/// heading) with its number (`## 8. …` → 8; unnumbered sections are dropped).
fn split_sections(text: &str) -> (&str, Vec<(u32, &str)>) {
    let starts: Vec<usize> = text
        .match_indices("\n## ")
        .map(|(i, _)| i + 1)
        .chain(text.starts_with("## ").then_some(0))
        .collect::<std::collections::BTreeSet<_>>()
        .into_iter()
        .collect();
    let Some(&first) = starts.first() else {
        return (text, Vec::new());
    };
    let mut sections = Vec::new();
    for (i, &start) in starts.iter().enumerate() {
        let end = starts.get(i + 1).copied().unwrap_or(text.len());
        let chunk = &text[start..end];
        let number = chunk[3..].split('.').next().and_then(|n| n.trim().parse().ok());
        if let Some(n) = number {
            sections.push((n, chunk));
        }
    }
    (&text[..first], sections)
}

pub fn median(values: &mut [f64]) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let n = values.len();
    if n % 2 == 1 {
        values[n / 2]
    } else {
        (values[n / 2 - 1] + values[n / 2]) / 2.0
    }
}

/// The `q` quantile (0..=1) of `values`, nearest rank.
pub fn quantile(values: &mut [f64], q: f64) -> f64 {
    if values.is_empty() {
        return f64::NAN;
    }
    values.sort_by(|a, b| a.total_cmp(b));
    let rank = ((q * values.len() as f64).ceil() as usize).clamp(1, values.len());
    values[rank - 1]
}

pub fn verdict(ok: bool) -> &'static str {
    if ok {
        "met"
    } else {
        "**not met**"
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_binary_is_named_from_its_profile_folder_not_the_host() {
        let p = std::path::Path::new("/some/where/target/release/secrets-sidecar");
        assert_eq!(shown_binary(p), "target/release/secrets-sidecar");
        assert_eq!(
            shown_binary(std::path::Path::new("/t/debug/bench")),
            "target/debug/bench"
        );
    }

    #[test]
    fn statistics() {
        assert_eq!(median(&mut [3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&mut [4.0, 1.0, 2.0, 3.0]), 2.5);
        let mut v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(quantile(&mut v, 0.99), 99.0);
        assert_eq!(quantile(&mut v, 0.5), 50.0);
        assert!(median(&mut []).is_nan());
    }

    #[test]
    fn a_partial_run_keeps_the_other_sections_in_order() {
        let previous = "# Benchmarks\n\nProduced by `make bench` on 2026-01-01 00:00 UTC.\n\n**Machine:** old box.\n\n## 1. One\n\nold one\n\n## 2. Two\n\nold two\n\n## 3. Three\n\nold three\n";
        let mut report = Report::new("m", false, "2026-02-02 00:00 UTC");
        report.section("2. Two", "new two");
        let merged = report.merged_with(previous);
        let one = merged.find("old one").expect("1 kept");
        let two = merged.find("new two").expect("2 replaced");
        let three = merged.find("old three").expect("3 kept");
        assert!(one < two && two < three, "{merged}");
        assert!(!merged.contains("old two"));
        assert!(merged.contains("Sections 1, 3 are kept from the run of 2026-01-01 00:00 UTC on old box;"));
        // Nothing to keep: the report as it is.
        assert_eq!(report.merged_with("# Benchmarks\n"), report.text);
    }

    #[test]
    fn tables_render() {
        let mut t = Table::new(&["a", "b"]);
        t.row(vec!["1".into(), "2".into()]);
        assert_eq!(t.render(), "| a | b |\n| --- | --- |\n| 1 | 2 |\n");
    }
}
