//! Defaults and ranges of the settings: AWS's where the variable is AWS's (so the
//! sidecar is a drop-in replacement), wider where ours allows more.

use std::time::Duration;

use super::Platform;

pub const DEFAULT_HTTP_PORT: u16 = 2773;
pub const DEFAULT_CACHE_SIZE: usize = 1000;
/// AWS caps the cache at 1000 entries; we allow more for standalone use.
pub const MAX_CACHE_SIZE: usize = 100_000;
/// The cache's byte budget in a function: this fraction of its memory
/// (`AWS_LAMBDA_FUNCTION_MEMORY_SIZE`), so a 128 MB function keeps at most 8 MiB of
/// secrets and the sidecar's whole footprint stays under a sixth of its memory...
pub const BUDGET_SHARE_OF_MEMORY: u64 = 16;
/// ...and at most this much, however large the function.
pub const MAX_DEFAULT_CACHE_BYTES: u64 = 256 << 20;
/// Standalone (no function memory to size it by).
pub const STANDALONE_CACHE_BYTES: u64 = 64 << 20;
/// One value of Secrets Manager's largest size (64 KiB) must fit.
pub const MIN_CACHE_BYTES: u64 = 64 << 10;
pub const MAX_CACHE_BYTES: u64 = 64 << 30;
/// Lambda allows 10,240 MB; a wider bound only catches nonsense.
pub const MAX_FUNCTION_MEMORY_MB: u64 = 1 << 20;
pub const DEFAULT_TTL: Duration = Duration::from_secs(300);
/// AWS caps TTLs at 300 s; we allow up to a day.
pub const MAX_TTL: Duration = Duration::from_secs(86_400);
pub const DEFAULT_MAX_CONNECTIONS: usize = 3;
pub const MAX_MAX_CONNECTIONS: usize = 1000;
pub const MAX_TIMEOUT: Duration = Duration::from_secs(300);
pub const DEFAULT_MAX_STALE: Duration = Duration::from_secs(900);
/// Not-found and access-denied answers are remembered this long: a function hammering
/// a missing id costs one call per interval, and a secret created meanwhile shows up
/// within it.
pub const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(5);
pub const MAX_NEGATIVE_TTL: Duration = Duration::from_secs(3600);
pub const MAX_MAX_STALE: Duration = Duration::from_secs(7 * 86_400);
pub const DEFAULT_REFRESH_AHEAD: f64 = 0.75;
pub const MIN_REFRESH_AHEAD: f64 = 0.1;
pub const DEFAULT_INIT_TIMEOUT: Duration = Duration::from_millis(5000);
pub const MIN_INIT_TIMEOUT: Duration = Duration::from_millis(100);
/// Lambda gives the whole init phase 10 s; keep well inside it.
pub const MAX_INIT_TIMEOUT: Duration = Duration::from_millis(9000);
/// One invoke at a time (on-demand, provisioned, SnapStart) or one sidecar per task
/// or pod (standalone) leaves plenty of room in this; Managed Instances has its own
/// default (`lifecycle::limits`).
pub const DEFAULT_MAX_CLIENT_CONNECTIONS: usize = 256;
pub const MAX_MAX_CLIENT_CONNECTIONS: usize = 65_536;
pub const DEFAULT_REFRESH_NOW_INTERVAL: Duration = Duration::from_millis(1000);
pub const MAX_REFRESH_NOW_INTERVAL: Duration = Duration::from_secs(3600);
/// STS: an external id is 2–1224 characters of `[\w+=,.@:/-]`.
pub const MIN_EXTERNAL_ID_LEN: usize = 2;
pub const MAX_EXTERNAL_ID_LEN: usize = 1224;
/// STS: a role session name is at most 64 characters of `[\w+=,.@-]`.
pub const MAX_SESSION_NAME_LEN: usize = 64;

/// The byte budget when `SECRETS_SIDECAR_CACHE_BYTES` is unset: a sixteenth of the
/// function's memory up to [`MAX_DEFAULT_CACHE_BYTES`], or [`STANDALONE_CACHE_BYTES`]
/// outside Lambda.
pub fn default_cache_bytes(memory_mb: Option<u64>) -> u64 {
    match memory_mb {
        Some(mb) => ((mb << 20) / BUDGET_SHARE_OF_MEMORY).clamp(MIN_CACHE_BYTES, MAX_DEFAULT_CACHE_BYTES),
        None => STANDALONE_CACHE_BYTES,
    }
}

/// Lambda allots CPU in proportion to memory: one whole vCPU at 1,769 MB. Below it
/// the function has a share of one CPU however many the machine shows.
pub const ONE_VCPU_MEMORY_MB: u64 = 1769;
/// More workers than this add nothing for one function on loopback.
pub const DEFAULT_MAX_WORKER_THREADS: usize = 2;
pub const MAX_WORKER_THREADS: u64 = 64;

/// The runtime's threads when `SECRETS_SIDECAR_WORKER_THREADS` is unset: one (the
/// single-threaded runtime) in a function with less than a vCPU, where a second
/// worker could only compete for the same share of a CPU while bringing its own stack
/// and its own glibc malloc arena (3.7 MiB more resident with 1,000 cached secrets,
/// bench section 6); otherwise up to two workers. Managed Instances serve many
/// invokes at once on whole vCPUs: two workers there whatever the memory.
pub fn default_worker_threads(platform: Platform, memory_mb: Option<u64>, available: usize) -> usize {
    let workers = available.clamp(1, DEFAULT_MAX_WORKER_THREADS);
    match (platform, memory_mb) {
        (Platform::Standalone | Platform::ManagedInstances, _) => workers,
        (_, Some(mb)) if mb < ONE_VCPU_MEMORY_MB => 1,
        _ => workers,
    }
}
