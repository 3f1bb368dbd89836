//! The state every request handler shares: cache, token, allowlist, counters, readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use super::gate::Gate;
use super::metrics::{Metrics, Snapshot};
use crate::allow::AllowList;
use crate::backend::CallStats;
use crate::cache::Cache;
use crate::token::Token;

pub struct App {
    pub cache: Cache,
    pub token: Token,
    pub allow: Option<AllowList>,
    pub metrics: Metrics,
    /// The backend's HTTP attempts per API, for `/metrics`.
    pub calls: Arc<CallStats>,
    /// Closed during a SnapStart INIT, opened by the restore.
    pub gate: Gate,
    /// Start-up prefetch has settled (reported by `/ping`; requests are served before too).
    ready: AtomicBool,
}

impl App {
    pub fn new(cache: Cache, token: Token, allow: Option<AllowList>, calls: Arc<CallStats>, gate: Gate) -> Arc<App> {
        Arc::new(App {
            cache,
            token,
            allow,
            metrics: Metrics::default(),
            calls,
            gate,
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }

    /// Every layer's counts, for `/metrics` and the shutdown summary.
    pub fn snapshot(&self) -> Snapshot<'_> {
        Snapshot {
            server: &self.metrics,
            cache: &self.cache,
            calls: &self.calls,
        }
    }
}
