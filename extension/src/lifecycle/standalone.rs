//! Standalone mode (no `AWS_LAMBDA_RUNTIME_API`): ECS, Kubernetes, EC2, a laptop.
//!
//! Same server, cache and prefetch as in Lambda; a timer drives refresh-ahead and
//! SIGTERM/SIGINT a graceful exit 0. Invalid configuration prints to stderr and
//! exits 2; a port in use or a REQUIRED failure exits 1.

use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tokio::time::Instant;
use tracing::{error, info};

use super::{bind, describe_missing, Running};
use crate::config::{Config, ConfigErrors, ProcessEnv};
use crate::refresh::refresh_due;
use crate::token;

/// Longest pause between refresh-ahead passes (entries added by requests are
/// picked up at the next pass).
const REFRESH_TICK: Duration = Duration::from_secs(1);
const REFRESH_BUDGET: Duration = Duration::from_secs(30);
const STOP_BUDGET: Duration = Duration::from_secs(2);

pub async fn run(config: Result<Config, ConfigErrors>) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("secrets-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    let token = match token::for_standalone(&ProcessEnv) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("secrets-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    let listener = match bind(&config).await {
        Ok(l) => l,
        Err(msg) => {
            eprintln!("secrets-sidecar: {msg}");
            return ExitCode::FAILURE;
        }
    };
    let (Ok(mut term), Ok(mut int)) = (signal(SignalKind::terminate()), signal(SignalKind::interrupt())) else {
        eprintln!("secrets-sidecar: cannot install signal handlers");
        return ExitCode::FAILURE;
    };
    let running = Running::start(config, token, listener).await;
    info!(port = running.config.http_port, "listening (standalone)");

    let missing = running.prefetch().await;
    if !missing.is_empty() {
        let message = describe_missing(&missing);
        error!(%message, "start-up failed");
        eprintln!("secrets-sidecar: {message}");
        running.stop(Duration::from_millis(500)).await;
        return ExitCode::FAILURE;
    }

    let refresher = {
        let running = running.clone();
        tokio::spawn(async move {
            loop {
                let next = running
                    .app
                    .cache
                    .next_refresh_at()
                    .map_or(Instant::now() + REFRESH_TICK, |t| t.min(Instant::now() + REFRESH_TICK));
                tokio::select! {
                    () = running.stopping().cancelled() => break,
                    () = tokio::time::sleep_until(next) => {}
                }
                refresh_due(&running.app.cache, &running.app.metrics, REFRESH_BUDGET).await;
            }
        })
    };

    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "shutdown"),
        _ = int.recv() => info!(signal = "SIGINT", "shutdown"),
    }
    running.stop(STOP_BUDGET).await;
    refresher.abort();
    ExitCode::SUCCESS
}
