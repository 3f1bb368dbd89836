//! The state every request handler shares: cache, token, allowlist, metrics, readiness.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use crate::allow::AllowList;
use crate::backend::Upstream;
use crate::cache::{Cache, CacheSettings};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::token::Token;

pub struct App {
    pub cache: Cache,
    pub token: Token,
    pub allow: Option<AllowList>,
    pub metrics: Arc<Metrics>,
    /// Start-up prefetch has settled (reported by `/ping`; requests are served before too).
    ready: AtomicBool,
}

impl App {
    pub fn new(config: &Config, token: Token, upstream: Arc<dyn Upstream>, metrics: Arc<Metrics>) -> Arc<App> {
        Arc::new(App {
            cache: Cache::new(CacheSettings::from_config(config), upstream, metrics.clone()),
            token,
            allow: config.allow.clone(),
            metrics,
            ready: AtomicBool::new(false),
        })
    }

    pub fn set_ready(&self) {
        self.ready.store(true, Ordering::Release);
    }

    pub fn is_ready(&self) -> bool {
        self.ready.load(Ordering::Acquire)
    }
}
