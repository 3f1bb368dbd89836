//! secrets-sidecar: a Lambda extension (and plain sidecar) that prefetches, caches,
//! refreshes and serves AWS Secrets Manager secrets and SSM parameters on
//! `http://127.0.0.1:2773`, drop-in compatible with AWS's Parameters and Secrets
//! Lambda Extension.
//!
//! The layers, bottom up (imports point down only):
//! - `model`: the shared vocabulary (sources, selectors, scopes, references);
//!   `secret`: zeroizing byte storage.
//! - `backend`: the AWS clients behind the `Upstream` seam, values and their errors.
//! - `cache`: storage, single-flight, stale-if-error, batching, prefetch, refresh.
//! - `allow` (the allowlist), `token`, `config` (environment → each layer's settings).
//! - `metrics`: what is counted, `/metrics`, the shutdown summary and EMF lines.
//! - `server`: the front door, where a request goes: accept → `router` → one of
//!   two doors (`extension_api`, `sdk`) → `lookup` (the decision both share) → cache.
//! - `lifecycle`: Lambda's Extensions API or standalone mode: start, refresh, stop;
//!   beside it `files` (keeps `SECRETS_SIDECAR_FILES` current).
//! - `exec`: the exec wrapper (`secrets-sidecar-exec`, `secrets-sidecar exec`), which
//!   puts values into a runtime's environment and files; it asks the sidecar over
//!   HTTP and uses only `mapping`, `files::write` and `model` (no async runtime, no SDK).
//! - `logging`; `version` (the version and commit, for `--version` and the start-up
//!   line); `main.rs` wires.

pub mod allow;
pub mod backend;
pub mod cache;
pub mod config;
pub mod exec;
pub mod files;
pub mod lifecycle;
pub mod logging;
pub mod mapping;
pub mod metrics;
pub mod model;
pub mod secret;
pub mod server;
pub mod tenant;
pub mod token;
pub mod version;
