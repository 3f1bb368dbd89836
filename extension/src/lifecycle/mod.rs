//! Start-up and shutdown shared by both modes: build the app on a bound listener,
//! serve, prefetch within the init budget, stop within a deadline.
//!
//! `lambda` drives these from the Extensions API (INVOKE, SHUTDOWN, init/error);
//! `standalone` from timers and SIGTERM/SIGINT.

pub mod lambda;
pub mod standalone;

use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::app::App;
use crate::backend::aws::{load_sdk_config, AwsUpstream};
use crate::config::Config;
use crate::metrics::Metrics;
use crate::prefetch::{self, missing_required, Plan};
use crate::refs::SecretRef;
use crate::server::{self, Limits};
use crate::token::Token;

/// A started sidecar: serving, with its prefetch possibly still running.
pub struct Running {
    pub app: Arc<App>,
    pub config: Config,
    shutdown: CancellationToken,
    server: Mutex<Option<JoinHandle<()>>>,
    /// The start-up prefetch, registered before the first accept; taken by `prefetch`.
    plan: Mutex<Option<Plan>>,
}

impl Running {
    /// Builds the upstream clients and starts serving on `listener`.
    pub async fn start(config: Config, token: Token, listener: TcpListener) -> Arc<Running> {
        let metrics = Arc::new(Metrics::default());
        let sdk = load_sdk_config().await;
        let upstream = Arc::new(AwsUpstream::new(&sdk, &config, metrics.clone()));
        let app = App::new(&config, token, upstream, metrics);
        let shutdown = CancellationToken::new();
        let limits = Limits::new(config.max_client_connections.get());
        // Before serving: a request during INIT must find its key already in flight.
        let plan = prefetch::plan(&app.cache, &config.startup_refs());
        let server = tokio::spawn(server::serve(listener, app.clone(), shutdown.clone(), limits));
        Arc::new(Running {
            app,
            config,
            shutdown,
            server: Mutex::new(Some(server)),
            plan: Mutex::new(Some(plan)),
        })
    }

    /// Runs the start-up prefetch within the init budget and marks the sidecar
    /// ready. Returns the REQUIRED references that are not available, with why.
    pub async fn prefetch(&self) -> Vec<(SecretRef, String)> {
        let plan = self
            .plan
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        let deadline = tokio::time::Instant::now() + self.config.init_timeout;
        let report = match plan {
            Some(plan) => prefetch::run(&self.app.cache, plan, deadline).await,
            None => prefetch::Report::default(),
        };
        self.app.set_ready();
        missing_required(&self.config.required, &report)
    }

    /// Stops accepting, abandons upstream calls, drains connections, wipes every
    /// cached value and logs one summary line, all within `budget`.
    pub async fn stop(&self, budget: Duration) {
        self.shutdown.cancel();
        self.app.cache.shutdown(budget / 4).await;
        let server = self
            .server
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .take();
        if let Some(server) = server {
            let _ = tokio::time::timeout(budget / 2, server).await;
        }
        self.app.cache.wipe();
        info!(summary = %self.app.metrics.summary(), "stopped");
    }

    pub fn stopping(&self) -> &CancellationToken {
        &self.shutdown
    }
}

/// Binds the loopback listener on the configured port.
pub async fn bind(config: &Config) -> Result<TcpListener, String> {
    server::bind(config.http_port)
        .await
        .map_err(|e| format!("cannot listen on 127.0.0.1:{}: {e}", config.http_port))
}

/// Time left until an epoch-milliseconds deadline, less `margin`, at most `cap`.
pub fn until_deadline(deadline_ms: u64, margin: Duration, cap: Duration) -> Duration {
    let now_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    Duration::from_millis(deadline_ms.saturating_sub(now_ms))
        .saturating_sub(margin)
        .min(cap)
}

/// One line naming each unavailable REQUIRED reference and why.
pub fn describe_missing(missing: &[(SecretRef, String)]) -> String {
    let items: Vec<String> = missing.iter().map(|(r, why)| format!("{r}: {why}")).collect();
    format!("required secrets unavailable at start-up: {}", items.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deadlines() {
        let now_ms = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_millis() as u64;
        let d = until_deadline(now_ms + 2000, Duration::from_millis(200), Duration::from_secs(10));
        assert!(
            d <= Duration::from_millis(1800) && d > Duration::from_millis(1500),
            "{d:?}"
        );
        assert_eq!(
            until_deadline(now_ms + 2000, Duration::ZERO, Duration::from_millis(5)),
            Duration::from_millis(5)
        );
        assert_eq!(
            until_deadline(now_ms - 1000, Duration::ZERO, Duration::from_secs(1)),
            Duration::ZERO
        );
    }
}
