//! The state every request handler shares: cache, token, allowlist, counters, readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use super::gate::Gate;
use super::sdk::keys::KnownCredentials;
use crate::allow::AllowList;
use crate::backend::passthrough::Passthrough;
use crate::backend::CallStats;
use crate::cache::Cache;
use crate::metrics::{Metrics, Snapshot};
use crate::tenant::Tenancy;
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
    /// The credential sets SDK requests may be signed with (`sdk::keys`).
    pub sdk_keys: KnownCredentials,
    /// The backend's credentials and pass-through, for the SDK route; unset, the
    /// route refuses every request.
    passthrough: OnceLock<Arc<dyn Passthrough>>,
    /// `{tenant}` templates and their binding; unset, no id is any tenant's.
    tenancy: OnceLock<Arc<Tenancy>>,
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
            sdk_keys: KnownCredentials::default(),
            passthrough: OnceLock::new(),
            tenancy: OnceLock::new(),
            ready: AtomicBool::new(false),
        })
    }

    /// Enables the SDK route with the backend's credentials and pass-through.
    pub fn set_passthrough(&self, aws: Arc<dyn Passthrough>) {
        let _ = self.passthrough.set(aws);
    }

    pub fn passthrough(&self) -> Option<&Arc<dyn Passthrough>> {
        self.passthrough.get()
    }

    pub fn set_tenancy(&self, tenancy: Arc<Tenancy>) {
        let _ = self.tenancy.set(tenancy);
    }

    pub fn tenancy(&self) -> Option<&Arc<Tenancy>> {
        self.tenancy.get()
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
