//! Standalone mode (no `AWS_LAMBDA_RUNTIME_API`): ECS, Kubernetes, EC2, a laptop.
//!
//! Same server, cache and prefetch as in Lambda; a timer drives refresh-ahead and
//! SIGTERM/SIGINT a graceful exit 0. Invalid configuration prints to stderr and
//! exits 2; a port in use or a REQUIRED failure exits 1.

use std::process::ExitCode;
use std::time::Duration;

use tokio::signal::unix::{signal, SignalKind};
use tracing::{error, info};

use super::{bind, Running};
use crate::config::{Config, ConfigErrors, Host, Platform};

const STOP_BUDGET: Duration = Duration::from_secs(2);

pub async fn run(config: Result<Config, ConfigErrors>, host: Host) -> ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => {
            eprintln!("secrets-sidecar: {e}");
            return ExitCode::from(2);
        }
    };
    if crate::tenant::Tenancy::plan(&config.prefetch, config.allow.as_ref(), None, &config.roles.tenant).is_some() {
        eprintln!(
            "secrets-sidecar: {{tenant}} templates are configured, but standalone no tenant is ever named \
             (only Lambda's tenant isolation mode names one)"
        );
        return ExitCode::from(2);
    }
    let token = match host.token {
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
    let running = Running::start(config, token, listener, Platform::Standalone).await;
    info!(port = running.config.http_port, "listening (standalone)");

    if let Err(failure) = running.prefetch().await {
        let message = failure.to_string();
        error!(%message, "start-up failed");
        eprintln!("secrets-sidecar: {message}");
        running.stop(Duration::from_millis(500)).await;
        return ExitCode::FAILURE;
    }

    running.start_refresh_timer();

    tokio::select! {
        _ = term.recv() => info!(signal = "SIGTERM", "shutdown"),
        _ = int.recv() => info!(signal = "SIGINT", "shutdown"),
    }
    running.stop(STOP_BUDGET).await;
    ExitCode::SUCCESS
}
