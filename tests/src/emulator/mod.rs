//! A local AWS Lambda execution environment: the Runtime API and Extensions API,
//! real processes for the runtime (`bootstrap`) and every executable of a layer-like
//! `extensions/` folder, and Lambda's ordering rules (`../lambda-contract.md` in the
//! design notes; the contract tests in `tests/tests/contract.rs` check each one).
//!
//! Where each rule lives:
//! - `init.rs` — Init: extensions start first (name order); the runtime starts once
//!   all have registered; init ends when the runtime and every extension wait in
//!   `next` (10 s bound). The first invoke, or one after a reset, inits on demand.
//! - `invoke.rs` — Invoke: INVOKE goes to the extensions' `next` first, then the
//!   runtime's; the caller gets the runtime's answer at once; the function timeout
//!   bounds runtime and extensions together. The rule "invoke N+1 waits until every
//!   process is back in `next`" is `Emulator::hold_until_everyone_is_back_in_next`;
//!   once everyone is back, the REPORT line is written and every process is frozen
//!   (SIGSTOP, `procs.rs`) until the next invoke.
//! - `shutdown.rs` — Shutdown: the runtime gets SIGTERM and 300 ms; extensions get
//!   SHUTDOWN with a deadline 2 s ahead, then SIGKILL. A timeout, a crash or an
//!   `init/error`/`exit/error` resets the environment ([`ShutdownReason::Timeout`] or
//!   [`ShutdownReason::Failure`]); the next invoke starts a new one (a cold start).
//! - `api.rs` serves both APIs and parks `next` requests; `state.rs` holds who waits
//!   where, under one mutex, with a timestamped trace; `env.rs` builds Lambda's
//!   environment; `config.rs` the function configuration and the deliberate quirks.
//!
//! One thing changes the environment at a time: init, an invoke and a shutdown each
//! take the emulator's `Turn`; an invoke keeps it until every process is back in
//! `next`, so whatever comes next finds a settled (and frozen) environment.
//!
//! Front doors (`gateway`): an RIE-compatible invoke endpoint and an API-Gateway-like
//! HTTP gateway producing HTTP API v2 events.

pub mod api;
pub mod config;
pub mod env;
pub mod gateway;
mod init;
mod invoke;
pub mod procs;
mod shutdown;
pub mod state;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::OwnedMutexGuard;
use tokio::task::JoinSet;

pub use config::{FunctionConfig, Quirks};
pub use invoke::{Invoked, Outcome, Report};
pub use shutdown::ShutdownReport;
pub use state::{epoch_ms, Phase, ShutdownReason, Trace, TraceEvent};

use procs::Processes;
use state::Shared;

use crate::net::{self, Server};
use crate::process::Logs;

#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<FunctionConfig>,
    shared: Arc<Shared>,
    /// The Runtime and Extensions APIs; they stop with the emulator.
    server: Server,
    procs: Processes,
    /// Held by whoever holds a [`Turn`].
    turn: Arc<tokio::sync::Mutex<()>>,
    /// The end of each invoke, run after the caller got its answer (see `invoke.rs`);
    /// dropped, and so stopped, with the emulator.
    invoke_endings: Mutex<JoinSet<()>>,
    logs: Arc<Logs>,
    reports: Mutex<Vec<Report>>,
    stream: String,
}

/// The right to change the environment: init, an invoke, a shutdown. One at a time;
/// released when dropped. An invoke hands its turn to the task that ends it, so the
/// turn comes free only once every process is back in `next`.
struct Turn {
    _held: OwnedMutexGuard<()>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Emulator {
    /// Starts the API server. The environment itself starts at the first invoke (or [`Emulator::init`]).
    pub async fn start(cfg: FunctionConfig) -> Result<Emulator> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let shared = Arc::new(Shared::new());
        let cfg = Arc::new(cfg);
        let service = {
            let (shared, cfg) = (shared.clone(), cfg.clone());
            service_fn(move |req| api::handle(shared.clone(), cfg.clone(), req))
        };
        let server = net::serve(listener, service)?;
        let stream = format!("{}/[$LATEST]{}", chrono_like_date(), uuid::Uuid::new_v4().simple());
        Ok(Emulator {
            inner: Arc::new(Inner {
                procs: Processes::new(cfg.freeze),
                cfg,
                shared,
                server,
                turn: Arc::new(tokio::sync::Mutex::new(())),
                invoke_endings: Mutex::new(JoinSet::new()),
                logs: Arc::new(Logs::default()),
                reports: Mutex::new(Vec::new()),
                stream,
            }),
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`: `host:port`.
    pub fn runtime_api(&self) -> String {
        format!("127.0.0.1:{}", self.inner.server.port())
    }

    pub fn config(&self) -> &FunctionConfig {
        &self.inner.cfg
    }

    /// Every process's output, each line prefixed with `[name] `, plus REPORT lines.
    pub fn logs(&self) -> &Arc<Logs> {
        &self.inner.logs
    }

    pub fn trace(&self) -> Vec<TraceEvent> {
        self.inner.shared.trace()
    }

    pub fn reports(&self) -> Vec<Report> {
        lock(&self.inner.reports).clone()
    }

    pub fn phase(&self) -> Phase {
        self.inner.shared.lock().phase
    }

    /// Names of the running processes.
    pub fn process_names(&self) -> Vec<String> {
        self.inner.procs.names()
    }

    /// Starts a new environment: extensions, then (once they registered) the runtime;
    /// done when all of them wait in `next`. Returns the init duration.
    pub async fn init(&self) -> Result<Duration, String> {
        let _turn = self.take_turn().await;
        self.start_environment().await
    }

    /// Invokes the function with `payload`, starting an environment if there is none.
    /// Returns with the runtime's answer; the invoke keeps the turn until every
    /// process is back in `next`.
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Invoked {
        let turn = self.take_turn().await;
        self.run_invoke(turn, payload.into()).await
    }

    /// Waits for the invoke in progress to complete (everyone back in `next`).
    pub async fn settle(&self) {
        let _turn = self.take_turn().await;
    }

    /// Shuts the environment down with `reason` (Lambda's own ends one with
    /// [`ShutdownReason::Spindown`]) and reports how each process ended. The emulator
    /// can start a new environment afterwards.
    pub async fn shutdown(&self, reason: ShutdownReason) -> ShutdownReport {
        let _turn = self.take_turn().await;
        self.teardown(reason).await
    }

    async fn take_turn(&self) -> Turn {
        Turn {
            _held: self.inner.turn.clone().lock_owned().await,
        }
    }
}

/// `YYYY/MM/DD` for log stream names, from the epoch (no date crate needed).
fn chrono_like_date() -> String {
    let days = (epoch_ms() / 86_400_000) as i64;
    // Civil-from-days (Howard Hinnant's algorithm).
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}/{m:02}/{d:02}")
}
