//! secrets-sidecar: a Lambda extension (and plain sidecar) that prefetches, caches,
//! refreshes and serves AWS Secrets Manager secrets and SSM parameters on
//! `http://127.0.0.1:2773`, drop-in compatible with AWS's Parameters and Secrets
//! Lambda Extension.
//!
//! How a request flows:
//! `server` (accept, limits) → `server::routes` (method, path) → `server::auth`
//! (token, X-Forwarded-For) → `query` (parse) → `allow` (allowlist) → `cache`
//! (hit, single-flight miss, stale-if-error) → `backend` (AWS SDK) →
//! `server::response` (shape the answer), with `error` mapping failures to statuses.
//!
//! Around it: `config` (environment), `token`, `lifecycle` (Lambda Extensions API or
//! standalone), `prefetch` and `refresh` (both batched by `fetch`), `metrics`,
//! `logging`, and `secret` (zeroizing storage).

pub mod allow;
pub mod app;
pub mod backend;
pub mod cache;
pub mod config;
pub mod error;
pub mod fetch;
pub mod lifecycle;
pub mod logging;
pub mod metrics;
pub mod prefetch;
pub mod query;
pub mod refresh;
pub mod refs;
pub mod secret;
pub mod server;
pub mod token;
