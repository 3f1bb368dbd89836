//! A local AWS Lambda execution environment: the Runtime API and Extensions API,
//! real processes for the runtime (`bootstrap`) and every executable of a layer-like
//! `extensions/` folder, and Lambda's ordering rules (`../lambda-contract.md` in the
//! design notes; the contract tests in `tests/tests/system/contract.rs` check each one).
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
//!
//! Tenant isolation (`FunctionConfig::tenant_isolation`, `invoke.rs`): every invoke
//! names a tenant ([`Emulator::invoke_for_tenant`]; one without, or with an invalid
//! id, is [`Outcome::Rejected`] before any environment is touched); an environment is
//! bound to the tenant of its first invoke, and an invoke for another tenant spins it
//! down and starts a new one. The runtime sees the tenant in
//! `Lambda-Runtime-Aws-Tenant-Id`; the extensions' INVOKE never names it.
//! `telemetry.rs`: the Telemetry API (subscriptions during init, buffered delivery of
//! `platform.start`, `platform.runtimeDone`, `platform.report`).

pub mod api;
pub mod config;
pub mod credentials;
pub mod env;
pub mod gateway;
mod init;
mod invoke;
mod managed;
pub mod modes;
pub mod procs;
mod shutdown;
pub mod snapshot;
mod snapstart;
pub mod state;
pub mod telemetry;

use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::service::service_fn;
use tokio::net::TcpListener;
use tokio::sync::{OwnedRwLockReadGuard, OwnedRwLockWriteGuard, RwLock, Semaphore};
use tokio::task::JoinSet;

pub use config::{FunctionConfig, Quirks, Runtime};
pub use invoke::{Invoked, Outcome, Report};
pub use modes::Mode;
pub use shutdown::ShutdownReport;
pub use snapshot::{Finding, Form, Place, SnapshotReport};
pub use state::{epoch_ms, Phase, ShutdownReason, SnapStage, Trace, TraceEvent};

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
    turn: Arc<RwLock<()>>,
    /// Invokes in flight at once: one, or `AWS_LAMBDA_MAX_CONCURRENCY` on Managed Instances.
    slots: Arc<Semaphore>,
    /// Counts environments started, so a late reset spares a newer environment.
    generation: AtomicU64,
    /// The environment's `/tmp` (given as `TMPDIR` in SnapStart, where the snapshot
    /// scans it); emptied for every new environment.
    tmp: tempfile::TempDir,
    /// The end of each invoke, run after the caller got its answer (see `invoke.rs`);
    /// dropped, and so stopped, with the emulator.
    invoke_endings: Mutex<JoinSet<()>>,
    logs: Arc<Logs>,
    reports: Mutex<Vec<Report>>,
    stream: String,
}

/// The right to change the environment: init, an invoke, a shutdown. One at a time;
/// released when dropped. An invoke hands its turn to the task that ends it, so the
/// turn comes free only once every process is back in `next`. Managed Instances'
/// invokes hold it shared, so several run at once while init and shutdown wait.
enum Turn {
    Alone { _guard: OwnedRwLockWriteGuard<()> },
    Shared { _guard: OwnedRwLockReadGuard<()> },
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
        let tmp = tempfile::Builder::new().prefix("lambda-tmp-").tempdir()?;
        Ok(Emulator {
            inner: Arc::new(Inner {
                procs: Processes::new(cfg.freezes()),
                slots: Arc::new(Semaphore::new(cfg.max_concurrency())),
                cfg,
                shared,
                server,
                turn: Arc::new(RwLock::new(())),
                generation: AtomicU64::new(0),
                tmp,
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

    /// Where a SnapStart environment stands (snapshot taken, restored).
    pub fn snap_stage(&self) -> SnapStage {
        self.inner.shared.lock().snap
    }

    /// The environment's `/tmp` (`TMPDIR` in SnapStart mode).
    pub fn tmp_dir(&self) -> &Path {
        self.inner.tmp.path()
    }

    /// Every `next` an extension made after its SHUTDOWN (a contract violation), by name.
    pub fn next_after_shutdown(&self) -> Vec<String> {
        self.trace()
            .into_iter()
            .filter_map(|t| match t.what {
                Trace::NextAfterShutdown { name } => Some(name),
                _ => None,
            })
            .collect()
    }

    /// Names of the running processes.
    pub fn process_names(&self) -> Vec<String> {
        self.inner.procs.names()
    }

    /// (pid, command name) of every live process of the environment, children too.
    pub fn pids(&self) -> Vec<(i32, String)> {
        snapshot::processes_in_groups(&self.inner.procs.groups())
    }

    /// Starts a new environment: extensions, then (once they registered) the runtime;
    /// done when all of them wait in `next`. Returns the init duration.
    pub async fn init(&self) -> Result<Duration, String> {
        let _turn = self.take_turn().await;
        self.start_environment().await
    }

    /// Invokes the function with `payload`, starting an environment if there is none
    /// (in SnapStart mode, also snapshotting and restoring it first if no test did).
    /// Returns with the runtime's answer; the invoke keeps the turn until every
    /// process is back in `next`. On Managed Instances up to
    /// `AWS_LAMBDA_MAX_CONCURRENCY` invokes run at once (call this from several
    /// tasks, or use [`Emulator::invoke_all`]); elsewhere they queue.
    ///
    /// In tenant isolation mode this is refused ([`Outcome::Rejected`]): use
    /// [`Emulator::invoke_for_tenant`].
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Invoked {
        if self.inner.cfg.tenant_isolation && !self.inner.cfg.quirks.tenant_optional {
            return self.refuse_invoke("the function uses tenant isolation: every invoke needs a tenant id");
        }
        if self.inner.cfg.mode.is_managed() {
            return self.run_managed_invoke(payload.into()).await;
        }
        let turn = self.take_turn().await;
        self.run_invoke(turn, payload.into(), None).await
    }

    /// Tenant isolation: invokes the function for `tenant` (1 to 256 characters of
    /// `[a-zA-Z0-9._:/=+-@ ]`), in an environment that serves `tenant` alone: the
    /// warm one if it is `tenant`'s, else a new one (an environment of another tenant
    /// is spun down first). Refused ([`Outcome::Rejected`]) for an invalid id, or when
    /// the function does not use tenant isolation (on-demand platforms only).
    pub async fn invoke_for_tenant(&self, tenant: &str, payload: impl Into<Bytes>) -> Invoked {
        let cfg = &self.inner.cfg;
        if !cfg.tenant_isolation || cfg.mode.is_managed() {
            return self.refuse_invoke("a tenant id was given, but the function does not use tenant isolation");
        }
        if let Err(why) = valid_tenant(tenant) {
            return self.refuse_invoke(&why);
        }
        let turn = self.take_turn().await;
        self.run_invoke(turn, payload.into(), Some(tenant)).await
    }

    /// The tenant the current environment serves (tenant isolation; `None` before its
    /// first invoke, or without an environment).
    pub fn tenant(&self) -> Option<String> {
        self.inner.shared.lock().tenant.clone()
    }

    /// Waits until the trace holds an event satisfying `pred` (at most `timeout`)
    /// and returns the first such event.
    pub async fn wait_for_trace(&self, timeout: Duration, pred: impl Fn(&Trace) -> bool) -> Result<TraceEvent> {
        net::poll(timeout, "the awaited trace event", || {
            let found = self.trace().into_iter().find(|t| pred(&t.what));
            async move { found }
        })
        .await
    }

    /// An invoke refused before it touched the environment (Lambda's 400).
    fn refuse_invoke(&self, why: &str) -> Invoked {
        let error_type = "InvalidParameterValueException";
        self.inner.shared.update(|s| {
            s.record(Trace::InvokeRefused {
                error_type: error_type.to_owned(),
                why: why.to_owned(),
            })
        });
        Invoked {
            request_id: uuid::Uuid::new_v4().to_string(),
            outcome: Outcome::Rejected {
                error_type: error_type.to_owned(),
                message: why.to_owned(),
            },
            init: None,
            duration: Duration::ZERO,
        }
    }

    /// Invokes once per payload, all at once, each in its own task; the results in
    /// the payloads' order.
    pub async fn invoke_all(&self, payloads: Vec<Bytes>) -> Vec<Invoked> {
        let mut tasks = JoinSet::new();
        for (i, payload) in payloads.into_iter().enumerate() {
            let this = self.clone();
            tasks.spawn(async move { (i, this.invoke(payload).await) });
        }
        let mut done: Vec<(usize, Invoked)> = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            match joined {
                Ok(result) => done.push(result),
                // A panicking invoke task is the emulator's bug: surface it.
                Err(e) => std::panic::resume_unwind(e.into_panic()),
            }
        }
        done.sort_by_key(|(i, _)| *i);
        done.into_iter().map(|(_, invoked)| invoked).collect()
    }

    /// Provisioned concurrency's gap between init and traffic: starts an environment
    /// if there is none, then leaves it idle for `spell` (frozen, as Lambda leaves it;
    /// Managed Instances keep running), holding invokes back until the spell is over.
    /// Returns the init duration when it started the environment.
    pub async fn idle(&self, spell: Duration) -> Result<Option<Duration>, String> {
        let _turn = self.take_turn().await;
        let init = self.init_on_demand().await?;
        let shared = &self.inner.shared;
        self.inner.procs.freeze(shared);
        shared.update(|s| s.record(Trace::IdleStarted));
        tokio::time::sleep(spell).await;
        shared.update(|s| s.record(Trace::IdleEnded));
        Ok(init)
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
        Turn::Alone {
            _guard: self.inner.turn.clone().write_owned().await,
        }
    }

    async fn take_shared_turn(&self) -> Turn {
        Turn::Shared {
            _guard: self.inner.turn.clone().read_owned().await,
        }
    }
}

/// A tenant id as Lambda accepts it: 1 to 256 characters of `[a-zA-Z0-9._:/=+-@ ]`.
pub fn valid_tenant(tenant: &str) -> Result<(), String> {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "._:/=+-@ ".contains(c);
    if tenant.is_empty() || tenant.chars().count() > 256 {
        return Err(format!(
            "the tenant id must be 1 to 256 characters, not {}",
            tenant.chars().count()
        ));
    }
    match tenant.chars().find(|c| !allowed(*c)) {
        Some(c) => Err(format!(
            "the tenant id may not contain {c:?} (allowed: [a-zA-Z0-9._:/=+-@ ])"
        )),
        None => Ok(()),
    }
}

/// `YYYY/MM/DD` for log stream names, from the epoch (no date crate needed).
fn chrono_like_date() -> String {
    let (y, m, d) = credentials::civil_from_days((epoch_ms() / 86_400_000) as i64);
    format!("{y:04}/{m:02}/{d:02}")
}

#[cfg(test)]
mod tests {
    use super::valid_tenant;

    #[test]
    fn tenant_ids_follow_lambdas_pattern() {
        for ok in ["a", "tenant-1", "org/team:a=b+c@d e.f_g", &"x".repeat(256)] {
            assert_eq!(valid_tenant(ok), Ok(()), "{ok}");
        }
        for bad in ["", "café", "a;b", "a\nb", &"x".repeat(257)] {
            assert!(valid_tenant(bad).is_err(), "{bad}");
        }
    }
}
