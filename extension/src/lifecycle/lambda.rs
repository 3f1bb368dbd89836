//! Lambda mode (`AWS_LAMBDA_RUNTIME_API` set): the Extensions API lifecycle, per
//! platform (`config::Platform` tells them apart, `config::Host` reads it).
//!
//! bind → register (the platform's events) → serve → INIT work while the runtime
//! starts (the prefetch; under SnapStart only metadata checks of REQUIRED) → first
//! `event/next` once it has settled, so a provisioned environment is frozen warm.
//! Each INVOKE runs refresh-ahead (Managed Instances: a timer does) and returns
//! before the next `event/next`; under SnapStart the first INVOKE or request after
//! INIT is the restore. SHUTDOWN stops everything and exits 0 without asking for
//! another event. Invalid configuration, an unusable port and REQUIRED failures are
//! reported through `/extension/init/error`.

use std::process::ExitCode;
use std::time::Duration;

use tracing::{error, info, warn};

use super::extensions_api::{Event, EventType, ExtensionsApi};
use super::{bind, telemetry, until_deadline, Running};
use crate::config::{vars, Config, ConfigErrors, Host, Platform, RefreshDriver};

/// Longest refresh-ahead per INVOKE: it delays this invoke's end (not its response).
const REFRESH_CAP: Duration = Duration::from_secs(3);
/// Kept free before an invoke's deadline.
const INVOKE_MARGIN: Duration = Duration::from_millis(100);
/// Kept free before the SHUTDOWN deadline (Lambda kills at the deadline).
const SHUTDOWN_MARGIN: Duration = Duration::from_millis(300);
const SHUTDOWN_CAP: Duration = Duration::from_millis(1500);

/// The events to register for: Managed Instances refuses INVOKE (403).
fn events(platform: Platform) -> &'static [EventType] {
    match platform {
        Platform::ManagedInstances => &[EventType::Shutdown],
        _ => &[EventType::Invoke, EventType::Shutdown],
    }
}

/// The name Lambda knows this extension by: its executable's file name in
/// `/opt/extensions` (any other name makes it an internal extension).
fn extension_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| {
            std::path::Path::new(&a)
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
        })
        .unwrap_or_else(|| "secrets-sidecar".to_owned())
}

/// `host` is Lambda's: its `runtime_api` is set (`main` checks).
pub async fn run(config: Result<Config, ConfigErrors>, host: Host) -> ExitCode {
    let Some(runtime_api) = host.runtime_api.as_deref() else {
        eprintln!("secrets-sidecar: {} is not set", vars::LAMBDA_RUNTIME_API);
        return ExitCode::FAILURE;
    };
    let api = ExtensionsApi::new(runtime_api);
    let platform = host.platform;
    if let Some(unknown) = &host.unknown_platform {
        warn!(value = %unknown, "unknown {}; running as on-demand", vars::LAMBDA_INITIALIZATION_TYPE);
    }
    info!(platform = %platform, "Lambda platform");
    let config = match config {
        Ok(c) => c,
        Err(e) => return fail_before_start(&api, platform, &e.to_string(), "Extension.ConfigInvalid").await,
    };
    let token = match host.token {
        Ok(t) => t,
        Err(e) => return fail_before_start(&api, platform, &e.to_string(), "Extension.ConfigInvalid").await,
    };
    let listener = match bind(&config).await {
        Ok(l) => l,
        Err(msg) => return fail_before_start(&api, platform, &msg, "Extension.ListenFailed").await,
    };
    // Register first, then build the AWS clients: loading the TLS trust store takes
    // milliseconds, and Lambda starts the runtime's init as soon as we register. The
    // socket is already bound, so connections made meanwhile wait in its backlog.
    let id = match api.register(&extension_name(), events(platform)).await {
        Ok(id) => id,
        Err(e) => {
            error!(error = %e, "registration with the Extensions API failed");
            return ExitCode::FAILURE;
        }
    };
    let running = Running::start(config, token, listener, platform).await;
    info!(port = running.config.http_port, "registered");
    // Lambda closes the Telemetry API when INIT ends: subscribe now or never.
    if let Err(message) = subscribe_for_tenant(&api, &id, &running).await {
        error!(%message, "init failed");
        if let Err(e) = api.init_error(&id, "Extension.TenantUnavailable", &message).await {
            error!(error = %e, "posting init/error failed");
        }
        running.stop(Duration::from_millis(500)).await;
        return ExitCode::FAILURE;
    }

    if let Err(failure) = running.init().await {
        let message = failure.to_string();
        error!(%message, "init failed");
        if let Err(e) = api.init_error(&id, failure.error_type(), &message).await {
            error!(error = %e, "posting init/error failed");
        }
        running.stop(Duration::from_millis(500)).await;
        return ExitCode::FAILURE;
    }
    if platform.refresh_driver() == RefreshDriver::Timer {
        running.start_refresh_timer();
    }
    // The next call is INIT's `event/next`: under SnapStart the snapshot is taken
    // while it waits, so whatever wakes the sidecar after it is a restored clone.
    running.expect_restore();
    if let Some(tenancy) = &running.tenancy {
        tenancy.end_init();
    }

    loop {
        match api.next(&id).await {
            Ok(Event::Invoke { deadline_ms, .. }) => {
                running.restore().await;
                if let Err(message) = running.bind_tenant(deadline_ms).await {
                    // Like an INIT error, on the first invoke that can show it:
                    // Lambda fails the invoke and resets the environment.
                    error!(%message, "tenant binding failed");
                    if let Err(e) = api.exit_error(&id, "Extension.TenantMissing", &message).await {
                        error!(error = %e, "posting exit/error failed");
                    }
                    running.stop(Duration::from_millis(500)).await;
                    return ExitCode::FAILURE;
                }
                let budget = until_deadline(deadline_ms, INVOKE_MARGIN, REFRESH_CAP);
                if !budget.is_zero() && platform.refresh_driver() == RefreshDriver::Invoke {
                    running.refresh(budget).await;
                }
            }
            Ok(Event::Shutdown {
                deadline_ms,
                shutdown_reason,
            }) => {
                info!(reason = %shutdown_reason.to_ascii_lowercase(), "shutdown");
                let budget = until_deadline(deadline_ms, SHUTDOWN_MARGIN, SHUTDOWN_CAP);
                running.stop(budget.max(Duration::from_millis(50))).await;
                // No further `event/next`: after SHUTDOWN the extension exits.
                return ExitCode::SUCCESS;
            }
            Err(e) => {
                error!(error = %e, "Extensions API loop failed");
                running.stop(Duration::from_millis(500)).await;
                return ExitCode::FAILURE;
            }
        }
    }
}

/// With `{tenant}` templates: the listener Lambda posts platform events to, and
/// the subscription. No templates, nothing (and no listener).
async fn subscribe_for_tenant(api: &ExtensionsApi, id: &str, running: &Running) -> Result<(), String> {
    let Some(tenancy) = &running.tenancy else {
        return Ok(());
    };
    let listener = telemetry::listen(tenancy.clone(), running.stopping().clone())
        .await
        .map_err(|e| format!("{{tenant}} templates need a telemetry listener: {e}"))?;
    running.own_task("telemetry", listener.task);
    api.subscribe_telemetry(id, &listener.uri, telemetry::DELAY_MS)
        .await
        .map_err(|e| {
            format!(
                "{{tenant}} templates need Lambda's Telemetry API, which names the tenant; the subscription failed: {e}"
            )
        })?;
    info!("subscribed to the Telemetry API for the tenant");
    Ok(())
}

/// Registers only to report why the sidecar cannot start, then fails.
async fn fail_before_start(api: &ExtensionsApi, platform: Platform, message: &str, error_type: &str) -> ExitCode {
    error!(%message, "init failed");
    eprintln!("secrets-sidecar: {message}");
    match api.register(&extension_name(), events(platform)).await {
        Ok(id) => {
            if let Err(e) = api.init_error(&id, error_type, message).await {
                error!(error = %e, "posting init/error failed");
            }
        }
        Err(e) => error!(error = %e, "registration failed; cannot report the init error"),
    }
    ExitCode::FAILURE
}
