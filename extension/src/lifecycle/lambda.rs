//! Lambda mode (`AWS_LAMBDA_RUNTIME_API` set): the Extensions API lifecycle.
//!
//! bind → register (INVOKE, SHUTDOWN) → serve → prefetch while the runtime starts →
//! first `event/next` once the prefetch has settled, so a snapshotted or provisioned
//! environment is frozen warm. Each INVOKE runs refresh-ahead and returns before the
//! next `event/next`; SHUTDOWN stops everything and exits 0. Invalid configuration,
//! an unusable port and REQUIRED failures are reported through `/extension/init/error`.
//!
//! `lambda-extension`'s run loop keeps polling after SHUTDOWN, so the loop is raced
//! against a "stopped" signal and main returns as soon as the stop is done.

use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use lambda_extension::requests::{init_error, ErrorRequest};
use lambda_extension::{service_fn, Extension, LambdaEvent, NextEvent};
use lambda_runtime_api_client::Client;
use tokio::sync::oneshot;
use tracing::{error, info};

use super::{bind, describe_missing, until_deadline, Running};
use crate::config::{Config, ConfigErrors, ProcessEnv};
use crate::token;

/// Longest refresh-ahead per INVOKE: it delays this invoke's end (not its response).
const REFRESH_CAP: Duration = Duration::from_secs(3);
/// Kept free before an invoke's deadline.
const INVOKE_MARGIN: Duration = Duration::from_millis(100);
/// Kept free before the SHUTDOWN deadline (Lambda kills at the deadline).
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(300);
const SHUTDOWN_CAP: Duration = Duration::from_millis(1500);

const EVENTS: &[&str] = &["INVOKE", "SHUTDOWN"];

pub async fn run(config: Result<Config, ConfigErrors>) -> std::process::ExitCode {
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail_before_start(&e.to_string(), "Extension.ConfigInvalid").await,
    };
    let token = match token::for_lambda(&ProcessEnv) {
        Ok(t) => t,
        Err(e) => return fail_before_start(&e.to_string(), "Extension.ConfigInvalid").await,
    };
    let listener = match bind(&config).await {
        Ok(l) => l,
        Err(msg) => return fail_before_start(&msg, "Extension.ListenFailed").await,
    };
    // Register first, then build the AWS clients: loading the TLS trust store takes
    // milliseconds, and Lambda starts the runtime's init as soon as we register. The
    // socket is already bound, so connections made meanwhile wait in its backlog.
    let cell: Arc<OnceLock<Arc<Running>>> = Arc::new(OnceLock::new());
    let (stopped_tx, stopped_rx) = oneshot::channel::<()>();
    let stopped_tx = Arc::new(Mutex::new(Some(stopped_tx)));
    let processor = {
        let cell = cell.clone();
        service_fn(move |event: LambdaEvent| {
            let cell = cell.clone();
            let stopped_tx = stopped_tx.clone();
            async move {
                // Events only come once `run` polls, after `cell` is set.
                if let Some(running) = cell.get() {
                    on_event(running, event.next).await;
                    if running.stopping().is_cancelled() {
                        let tx = stopped_tx
                            .lock()
                            .unwrap_or_else(std::sync::PoisonError::into_inner)
                            .take();
                        if let Some(tx) = tx {
                            let _ = tx.send(());
                        }
                    }
                }
                Ok::<(), lambda_extension::Error>(())
            }
        })
    };
    let registered = match Extension::new()
        .with_events(EVENTS)
        .with_events_processor(processor)
        .register()
        .await
    {
        Ok(r) => r,
        Err(e) => {
            error!(error = %e, "registration with the Extensions API failed");
            return std::process::ExitCode::FAILURE;
        }
    };
    let running = Running::start(config, token, listener).await;
    let _ = cell.set(running.clone());
    info!(port = running.config.http_port, "registered");

    let missing = running.prefetch().await;
    if !missing.is_empty() {
        let message = describe_missing(&missing);
        error!(%message, "init failed");
        post_init_error(
            &registered.extension_id,
            &message,
            "Extension.RequiredSecretUnavailable",
        )
        .await;
        running.stop(Duration::from_millis(500)).await;
        return std::process::ExitCode::FAILURE;
    }

    tokio::select! {
        biased;
        _ = stopped_rx => std::process::ExitCode::SUCCESS,
        result = registered.run() => {
            match result {
                Ok(()) => std::process::ExitCode::SUCCESS,
                // After SHUTDOWN the loop polls again and the API may already be gone.
                Err(_) if running.stopping().is_cancelled() => std::process::ExitCode::SUCCESS,
                Err(e) => {
                    error!(error = %e, "Extensions API loop failed");
                    running.stop(Duration::from_millis(500)).await;
                    std::process::ExitCode::FAILURE
                }
            }
        }
    }
}

async fn on_event(running: &Running, event: NextEvent) {
    match event {
        NextEvent::Invoke(invoke) => {
            let budget = until_deadline(invoke.deadline_ms, INVOKE_MARGIN, REFRESH_CAP);
            if !budget.is_zero() {
                running.refresh(budget).await;
            }
        }
        NextEvent::Shutdown(shutdown) => {
            info!(reason = %shutdown.shutdown_reason.to_ascii_lowercase(), "shutdown");
            let budget = until_deadline(shutdown.deadline_ms, SHUTDOWN_MARGIN, SHUTDOWN_CAP);
            running.stop(budget.max(Duration::from_millis(50))).await;
        }
    }
}

/// Registers only to report why the sidecar cannot start, then fails.
async fn fail_before_start(message: &str, error_type: &str) -> std::process::ExitCode {
    error!(%message, "init failed");
    eprintln!("secrets-sidecar: {message}");
    match Extension::new().with_events(EVENTS).register().await {
        Ok(registered) => post_init_error(&registered.extension_id, message, error_type).await,
        Err(e) => error!(error = %e, "registration failed; cannot report the init error"),
    }
    std::process::ExitCode::FAILURE
}

async fn post_init_error(extension_id: &str, message: &str, error_type: &str) {
    let body = ErrorRequest {
        error_message: message,
        error_type,
        stack_trace: vec![],
    };
    let sent = async {
        let client = Client::builder().build()?;
        let req = init_error(extension_id, error_type, Some(body))?;
        client.call(req).await?;
        Ok::<(), Box<dyn std::error::Error + Send + Sync>>(())
    };
    if let Err(e) = sent.await {
        error!(error = %e, "posting init/error failed");
    }
}
