//! Load generation: `wrk` (Debian's package) when installed, otherwise a small
//! in-process keep-alive loader (good enough for the smoke run, not for results).

use std::process::Command;
use std::time::{Duration, Instant};

use anyhow::{anyhow, Result};

use crate::report::quantile;

/// Throughput and latency of one load run.
#[derive(Clone, Copy, Debug)]
pub struct Load {
    pub rps: f64,
    pub p50_us: f64,
    pub p99_us: f64,
}

pub fn have_wrk() -> bool {
    Command::new("wrk").arg("--version").output().is_ok()
}

/// The command line used for `connections` (shown in the report).
pub fn wrk_command(connections: usize, seconds: u64, header: &str, url: &str) -> Vec<String> {
    vec![
        "wrk".into(),
        "-t1".into(),
        format!("-c{connections}"),
        format!("-d{seconds}s"),
        "--latency".into(),
        "-H".into(),
        header.into(),
        url.into(),
    ]
}

fn parse_duration_us(s: &str) -> Option<f64> {
    let s = s.trim();
    let (num, unit) = s.split_at(s.find(|c: char| c.is_ascii_alphabetic())?);
    let v: f64 = num.parse().ok()?;
    Some(match unit {
        "us" => v,
        "ms" => v * 1000.0,
        "s" => v * 1_000_000.0,
        "m" => v * 60_000_000.0,
        _ => return None,
    })
}

/// Parses wrk's `--latency` output.
pub fn parse_wrk(out: &str) -> Result<Load> {
    let rps = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| anyhow!("no Requests/sec in wrk output:\n{out}"))?;
    let pct = |p: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .and_then(parse_duration_us)
    };
    Ok(Load {
        rps,
        p50_us: pct("50%").unwrap_or(f64::NAN),
        p99_us: pct("99%").unwrap_or(f64::NAN),
    })
}

/// Runs wrk against `url` with the token header.
pub fn wrk(connections: usize, seconds: u64, header: &str, url: &str) -> Result<Load> {
    let cmd = wrk_command(connections, seconds, header, url);
    let out = Command::new(&cmd[0]).args(&cmd[1..]).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        return Err(anyhow!("wrk failed: {}", String::from_utf8_lossy(&out.stderr)));
    }
    if text.contains("Non-2xx or 3xx responses") {
        return Err(anyhow!("non-2xx responses under load:\n{text}"));
    }
    parse_wrk(&text)
}

/// The fallback loader: `connections` keep-alive clients for `duration`.
pub async fn in_process(connections: usize, duration: Duration, header: (&str, &str), url: &str) -> Result<Load> {
    let client = harness::net::HttpClient::new();
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let client = client.clone();
        let url = url.to_owned();
        let (k, v) = (header.0.to_owned(), header.1.to_owned());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            while started.elapsed() < duration {
                let t = Instant::now();
                let r = client.get(&url, &[(&k, &v)]).await?;
                anyhow::ensure!(r.status == 200, "status {}", r.status);
                lat.push(t.elapsed().as_secs_f64() * 1e6);
            }
            Ok::<_, anyhow::Error>(lat)
        }));
    }
    let mut all = Vec::new();
    for t in tasks {
        all.extend(t.await??);
    }
    let secs = started.elapsed().as_secs_f64();
    Ok(Load {
        rps: all.len() as f64 / secs,
        p50_us: quantile(&mut all.clone(), 0.5),
        p99_us: quantile(&mut all, 0.99),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_wrk_output() {
        let out = "Running 4s test @ http://127.0.0.1:2801/x\n  1 threads and 1 connections\n  Latency Distribution\n     50%   69.00us\n     75%   80.00us\n     90%  100.00us\n     99%    1.20ms\n  56000 requests in 4.00s, 10.00MB read\nRequests/sec:  14085.36\nTransfer/sec:      2.50MB\n";
        let l = parse_wrk(out).expect("parsed");
        assert_eq!(l.rps, 14085.36);
        assert_eq!(l.p50_us, 69.0);
        assert_eq!(l.p99_us, 1200.0);
        assert!(parse_wrk("garbage").is_err());
    }
}
