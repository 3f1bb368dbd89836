//! `secrets-sidecar`: wires configuration, logging and the runtime, then hands over
//! to the Lambda lifecycle or to standalone mode. `secrets-sidecar exec -- CMD…`
//! (and the binary started as `secrets-sidecar-exec`) is the exec wrapper instead;
//! `secrets-sidecar --version` prints the version and commit and does nothing else.

use std::process::ExitCode;
use std::time::Duration;

use secrets_sidecar::config::{Config, Host, LogFormat, LogLevel};
use secrets_sidecar::{exec, lifecycle, logging, version};

/// The single-threaded runtime for one thread (a function with less than a vCPU:
/// `Config::runtime_threads`), else that many workers.
fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

fn main() -> ExitCode {
    let mut args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let called = args
        .first()
        .and_then(|a| std::path::Path::new(a).file_name())
        .is_some_and(|n| n == exec::WRAPPER_NAME);
    if called {
        return exec::wrapper_main(args.split_off(1));
    }
    if args.get(1).is_some_and(|a| a == "exec") {
        return exec::subcommand_main(args.split_off(2));
    }
    if args.get(1).is_some_and(|a| a == "--version" || a == "-V") {
        println!("{}", version::line());
        return ExitCode::SUCCESS;
    }
    let host = Host::from_process_env();
    let config = Config::from_process_env();
    let (level, format) = match &config {
        Ok(c) => (c.log_level, c.log_format),
        Err(_) => (LogLevel::Info, LogFormat::Text),
    };
    logging::init(level, format);
    // Once, before anything can fail: every log stream names the build it came from.
    tracing::info!(version = version::VERSION, commit = version::COMMIT, "secrets-sidecar");
    // An invalid configuration only has to be reported: one thread does that.
    let threads = config.as_ref().map_or(1, |c| c.runtime_threads(host.platform));
    let runtime = match runtime(threads) {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("secrets-sidecar: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let code = runtime.block_on(async move {
        if host.platform.in_lambda() {
            lifecycle::lambda::run(config, host).await
        } else {
            lifecycle::standalone::run(config, host).await
        }
    });
    // Whatever is still pending (the next event/next poll) must not delay the exit.
    runtime.shutdown_timeout(Duration::from_millis(50));
    code
}
