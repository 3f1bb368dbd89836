//! Section 5 — Cost: upstream calls and their price for 10,000 invokes per hour per execution
//! environment at a TTL of 300 s, from the call counts measured in section 4: ours
//! (prefetch once, then refresh-ahead) versus fetching on every invoke (the article's
//! approach 2, SDK calls in the handler; measured as the sidecar with caching off,
//! which makes exactly one call per request).

use crate::refresh::Measured;
use crate::report::Table;

/// AWS Secrets Manager: $0.05 per 10,000 API calls.
/// Source: https://aws.amazon.com/secrets-manager/pricing/ (as read 2026-09-20).
pub const SECRETS_MANAGER_PER_10K: f64 = 0.05;
/// AWS Systems Manager Parameter Store: standard-throughput API interactions carry no
/// charge; with higher throughput enabled, $0.05 per 10,000 API interactions.
/// Source: https://aws.amazon.com/systems-manager/pricing/ (Parameter Store).
pub const PARAMETER_STORE_HIGH_THROUGHPUT_PER_10K: f64 = 0.05;

const INVOKES_PER_HOUR: f64 = 10_000.0;
const TTL_S: f64 = 300.0;
const HOURS_PER_MONTH: f64 = 730.0;

pub fn run(m: &Measured) -> String {
    let refreshes_per_hour = m.calls_per_ttl * (3600.0 / TTL_S);
    // One prefetch per environment start; counted as if environments lived an hour.
    let ours = 1.0 + refreshes_per_hour;
    let per_invoke = m.calls_per_invoke_uncached * INVOKES_PER_HOUR;
    let price = |calls: f64, per10k: f64| calls / 10_000.0 * per10k;
    let mut t = Table::new(&[
        "per key, per environment",
        "calls / hour",
        "Secrets Manager $ / hour",
        "Parameter Store (higher throughput) $ / hour",
        "Secrets Manager $ / month (730 h)",
    ]);
    for (name, calls) in [
        ("secrets-sidecar (prefetch + refresh-ahead)", ours),
        ("SDK call on every invoke", per_invoke),
    ] {
        t.row(vec![
            name.into(),
            format!("{calls:.1}"),
            format!("{:.6}", price(calls, SECRETS_MANAGER_PER_10K)),
            format!("{:.6}", price(calls, PARAMETER_STORE_HIGH_THROUGHPUT_PER_10K)),
            format!("{:.4}", price(calls, SECRETS_MANAGER_PER_10K) * HOURS_PER_MONTH),
        ]);
    }
    format!(
        "{}\nMeasured inputs (section 4): {:.2} upstream calls per key per TTL with refresh-ahead at {:.2} of the TTL; {:.2} calls per invoke with caching off. Scaled to a 300 s TTL: {:.1} refreshes an hour, plus the start-up prefetch. Ratio: {:.0}× fewer calls. The weather app reads three keys (one secret, two parameters): refreshes batch them into one BatchGetSecretValue and one GetParameters per round, so its calls grow with the number of APIs, not of keys.\n\nPrices: Secrets Manager $0.05 per 10,000 API calls (https://aws.amazon.com/secrets-manager/pricing/, as published on 2026-09-20); Parameter Store: no charge for standard-throughput API interactions, $0.05 per 10,000 with higher throughput enabled (https://aws.amazon.com/systems-manager/pricing/). Latency saved per invoke is not priced here: a cached answer takes tens of microseconds (section 1) where an AWS call takes tens of milliseconds.\n",
        t.render(),
        m.calls_per_ttl,
        m.refresh_ahead,
        m.calls_per_invoke_uncached,
        refreshes_per_hour,
        per_invoke / ours
    )
}
