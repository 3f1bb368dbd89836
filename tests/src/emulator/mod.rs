//! A local AWS Lambda execution environment: the Runtime API and Extensions API,
//! real processes for the runtime (`bootstrap`) and every executable of a layer-like
//! `extensions/` folder, and Lambda's ordering rules (`../lambda-contract.md` in the
//! design notes; the contract tests in `tests/tests/contract.rs` check each one).
//!
//! - Init: extensions start first; the runtime starts once all have registered; init
//!   ends when the runtime and every extension wait in `next` (10 s bound).
//! - Invoke: INVOKE goes to the extensions' `next` first, then the runtime's; the
//!   caller gets the runtime's answer at once; invoke N+1 waits until everyone is
//!   back in `next`; then every process is frozen (SIGSTOP) until the next invoke.
//! - The function timeout bounds runtime and extensions together; a timeout, a crash
//!   or an `init/error`/`exit/error` resets the environment (SHUTDOWN with reason
//!   `timeout` or `failure`); the next invoke starts a new one (a cold start).
//! - Shutdown: the runtime gets SIGTERM and 300 ms; extensions get SHUTDOWN with a
//!   deadline 2 s ahead, then SIGKILL.
//!
//! Front doors (`gateway`): an RIE-compatible invoke endpoint and an API-Gateway-like
//! HTTP gateway producing HTTP API v2 events.

pub mod api;
pub mod config;
pub mod env;
pub mod gateway;
pub mod procs;
pub mod state;

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Result;
use bytes::Bytes;
use hyper::service::service_fn;
use nix::sys::signal::Signal;
use serde_json::json;
use tokio::net::TcpListener;
use tokio::sync::oneshot;
use tokio::time::Instant;

pub use config::{FunctionConfig, Quirks};
use procs::{EnvProc, Role};
pub use state::{epoch_ms, Phase, Trace, TraceEvent};
use state::{Delivery, Invocation, RuntimeAnswer, Shared, State};

use crate::net::{self, Server};
use crate::process::Logs;

/// How an invocation ended, as the caller sees it.
#[derive(Clone, Debug, PartialEq)]
pub enum Outcome {
    Response(Bytes),
    FunctionError {
        error_type: String,
        body: Bytes,
    },
    /// The function timeout passed; the environment was reset with reason `timeout`.
    Timeout,
    /// The environment failed (init error, crash); it was reset with reason `failure`.
    Failed(String),
}

#[derive(Clone, Debug)]
pub struct Invoked {
    pub request_id: String,
    pub outcome: Outcome,
    /// Init duration when this invoke started a new environment.
    pub init: Option<Duration>,
    /// Until the runtime answered.
    pub duration: Duration,
}

/// One REPORT line's figures.
#[derive(Clone, Debug)]
pub struct Report {
    pub request_id: String,
    pub duration: Duration,
    /// From the runtime's answer until every extension was back in `next`.
    pub extension_overhead: Duration,
    pub init: Option<Duration>,
}

/// What happened to each process at shutdown.
#[derive(Clone, Debug, Default)]
pub struct ShutdownReport {
    pub reason: String,
    /// (extension, time from SHUTDOWN to exit, or None when it had to be killed).
    pub extensions: Vec<(String, Option<Duration>)>,
    pub killed: Vec<String>,
    /// Processes still running after the deadline (only with `Quirks::no_kill`).
    pub alive_after_deadline: Vec<String>,
}

#[derive(Clone)]
pub struct Emulator {
    inner: Arc<Inner>,
}

struct Inner {
    cfg: Arc<FunctionConfig>,
    shared: Arc<Shared>,
    port: u16,
    /// The Runtime and Extensions APIs; they stop with the emulator.
    _server: Server,
    procs: Mutex<Vec<EnvProc>>,
    invoke_lock: Arc<tokio::sync::Mutex<()>>,
    frozen: AtomicBool,
    logs: Arc<Logs>,
    reports: Mutex<Vec<Report>>,
    stream: String,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Executables of the extensions folder, in name order (Lambda's start order).
fn extension_executables(dir: &Option<PathBuf>) -> Vec<PathBuf> {
    let Some(dir) = dir else { return Vec::new() };
    let mut found: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(|e| e.ok())
                .map(|e| e.path())
                .filter(|p| std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0))
                .collect()
        })
        .unwrap_or_default();
    found.sort();
    found
}

fn file_name(p: &std::path::Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
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
        let port = server.port();
        let stream = format!("{}/[$LATEST]{}", chrono_like_date(), uuid::Uuid::new_v4().simple());
        Ok(Emulator {
            inner: Arc::new(Inner {
                cfg,
                shared,
                port,
                _server: server,
                procs: Mutex::new(Vec::new()),
                invoke_lock: Arc::new(tokio::sync::Mutex::new(())),
                frozen: AtomicBool::new(false),
                logs: Arc::new(Logs::default()),
                reports: Mutex::new(Vec::new()),
                stream,
            }),
        })
    }

    /// `AWS_LAMBDA_RUNTIME_API`: `host:port`.
    pub fn runtime_api(&self) -> String {
        format!("127.0.0.1:{}", self.inner.port)
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

    /// PIDs (process group ids) of the running processes, by name.
    pub fn process_names(&self) -> Vec<String> {
        lock(&self.inner.procs).iter().map(|p| p.name.clone()).collect()
    }

    /// Starts a new environment: extensions, then (once they registered) the runtime;
    /// done when all of them wait in `next`. Returns the init duration.
    pub async fn init(&self) -> Result<Duration, String> {
        let _guard = self.inner.invoke_lock.lock().await;
        self.init_locked().await
    }

    async fn init_locked(&self) -> Result<Duration, String> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let started = Instant::now();
        let deadline = started + cfg.init_timeout;
        let executables = extension_executables(&cfg.extensions_dir);
        let names: Vec<String> = executables.iter().map(|p| file_name(p)).collect();
        inner.shared.update(|s| {
            s.reset();
            s.phase = Phase::Initializing;
            s.started_extensions = names.clone();
        });
        inner.frozen.store(false, Ordering::SeqCst);
        let api = self.runtime_api();
        let ext_env = env::extension_env(cfg, &api, &inner.stream);
        for (path, name) in executables.iter().zip(&names) {
            match self.spawn(name, Role::Extension, path, &ext_env) {
                Ok(()) => inner
                    .shared
                    .update(|s| s.record(Trace::ExtensionStarted { name: name.clone() })),
                Err(e) => inner
                    .shared
                    .update(|s| s.fail(format!("cannot start extension {name}: {e}"))),
            }
        }
        if !cfg.quirks.runtime_before_registration {
            let count = names.len();
            let registered = inner
                .shared
                .wait_until(deadline, |s| {
                    s.extensions.iter().filter(|e| e.external).count() + s.refused.len() >= count
                })
                .await;
            if registered != Some(true) {
                return Err(self.fail_init("extensions did not all register").await);
            }
        }
        let rt_env = env::runtime_env(cfg, &api, &inner.stream);
        if let Err(e) = self.spawn("runtime", Role::Runtime, &cfg.bootstrap, &rt_env) {
            inner
                .shared
                .update(|s| s.fail(format!("cannot start the runtime: {e}")));
            return Err(self.fail_init("runtime did not start").await);
        }
        inner.shared.update(|s| {
            s.runtime_started = true;
            s.record(Trace::RuntimeStarted);
        });
        let ready = inner
            .shared
            .wait_until(deadline, |s| {
                s.runtime.waiter.is_some() && s.extensions.iter().all(|e| e.nexts >= 1)
            })
            .await;
        if ready != Some(true) {
            return Err(self.fail_init("init did not complete").await);
        }
        inner.shared.update(|s| {
            s.phase = Phase::Ready;
            s.record(Trace::InitDone);
        });
        self.freeze();
        Ok(started.elapsed())
    }

    async fn fail_init(&self, what: &str) -> String {
        let why = {
            let s = self.inner.shared.lock();
            s.failure
                .clone()
                .unwrap_or_else(|| format!("{what} within {:?}", self.inner.cfg.init_timeout))
        };
        self.inner.shared.update(|s| s.fail(why.clone()));
        self.teardown("failure").await;
        why
    }

    fn spawn(&self, name: &str, role: Role, program: &std::path::Path, env: &[(String, String)]) -> Result<()> {
        let shared = self.inner.shared.clone();
        let ignore = self.inner.cfg.quirks.ignore_extension_failures;
        let who = name.to_owned();
        let proc = EnvProc::spawn(name, role, program, env, self.inner.logs.clone(), move |status| {
            shared.update(|s| {
                s.record(Trace::ProcessExited {
                    name: who.clone(),
                    code: status.code(),
                });
                let ignorable = role == Role::Extension && ignore;
                if ignorable {
                    // The deliberately lax emulator forgets the extension instead.
                    s.extensions.retain(|e| e.name != who);
                } else if s.phase != Phase::ShuttingDown {
                    s.fail(format!("{who} exited ({status})"));
                }
            });
        })?;
        lock(&self.inner.procs).push(proc);
        Ok(())
    }

    fn freeze(&self) {
        if !self.inner.cfg.freeze || self.inner.frozen.swap(true, Ordering::SeqCst) {
            return;
        }
        for p in lock(&self.inner.procs).iter() {
            p.signal(Signal::SIGSTOP);
        }
        self.inner.shared.update(|s| s.record(Trace::Frozen));
    }

    fn thaw(&self) {
        if !self.inner.frozen.swap(false, Ordering::SeqCst) {
            return;
        }
        // Recorded before the signals, so nothing a thawed process does predates it.
        self.inner.shared.update(|s| s.record(Trace::Thawed));
        for p in lock(&self.inner.procs).iter() {
            p.signal(Signal::SIGCONT);
        }
    }

    /// Everyone who must be back in `next` before the next invoke.
    fn all_waiting(s: &State) -> bool {
        s.runtime.waiter.is_some()
            && s.extensions
                .iter()
                .filter(|e| e.wants("INVOKE"))
                .all(|e| e.waiter.is_some())
    }

    /// Invokes the function with `payload`, starting an environment if there is none.
    pub async fn invoke(&self, payload: impl Into<Bytes>) -> Invoked {
        let payload = payload.into();
        let guard = self.inner.invoke_lock.clone().lock_owned().await;
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let request_id = uuid::Uuid::new_v4().to_string();
        let mut init = None;
        if matches!(inner.shared.lock().phase, Phase::Idle | Phase::Failed) {
            match self.init_locked().await {
                Ok(d) => init = Some(d),
                Err(why) => {
                    return Invoked {
                        request_id,
                        outcome: Outcome::Failed(why),
                        init: None,
                        duration: Duration::ZERO,
                    }
                }
            }
        }
        let hold_deadline = Instant::now() + cfg.timeout;
        let held = if cfg.quirks.no_hold {
            inner
                .shared
                .wait_until(hold_deadline, |s| s.runtime.waiter.is_some())
                .await
        } else {
            inner.shared.wait_until(hold_deadline, Self::all_waiting).await
        };
        if held != Some(true) {
            let why = inner
                .shared
                .lock()
                .failure
                .clone()
                .unwrap_or_else(|| "not every process returned to next".into());
            self.teardown("failure").await;
            return Invoked {
                request_id,
                outcome: Outcome::Failed(why),
                init,
                duration: Duration::ZERO,
            };
        }
        self.thaw();
        let deadline_ms = epoch_ms() + cfg.timeout.as_millis() as u64;
        let deadline = Instant::now() + cfg.timeout;
        let (tx, rx) = oneshot::channel();
        let invocation = Invocation {
            request_id: request_id.clone(),
            deadline_ms,
            payload,
            function_arn: cfg.function_arn(),
            trace_id: format!("Root=1-{:08x}-{}", epoch_ms() / 1000, uuid::Uuid::new_v4().simple()),
        };
        let ext_deadline = (deadline_ms as i64 + cfg.quirks.extension_deadline_skew_ms).max(0) as u64;
        let event = json!({
            "eventType": "INVOKE",
            "deadlineMs": ext_deadline,
            "requestId": request_id,
            "invokedFunctionArn": invocation.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
        });
        let started = Instant::now();
        inner.shared.update(|s| {
            s.phase = Phase::Invoking;
            s.inflight = Some((request_id.clone(), tx));
            let to_extensions = |s: &mut State| {
                let mut delivered = Vec::new();
                for e in s.extensions.iter_mut().filter(|e| e.wants("INVOKE")) {
                    if let Some(w) = e.waiter.take() {
                        let _ = w.send(Delivery::Event(event.clone()));
                        delivered.push(e.name.clone());
                    }
                }
                for name in delivered {
                    s.record(Trace::InvokeToExtension {
                        name,
                        request_id: request_id.clone(),
                        deadline_ms: ext_deadline,
                    });
                }
            };
            let to_runtime = |s: &mut State| {
                if let Some(w) = s.runtime.waiter.take() {
                    let _ = w.send(Delivery::Invocation(invocation.clone()));
                    s.record(Trace::InvokeToRuntime {
                        request_id: request_id.clone(),
                        deadline_ms,
                    });
                }
            };
            if cfg.quirks.runtime_first {
                to_runtime(s);
                to_extensions(s);
            } else {
                to_extensions(s);
                to_runtime(s);
            }
        });
        let answer = tokio::select! {
            a = rx => a.ok(),
            _ = inner.shared.wait_until(deadline, |_| false) => None,
        };
        let duration = started.elapsed();
        let outcome = match answer {
            Some(RuntimeAnswer::Response(body)) => Outcome::Response(body),
            Some(RuntimeAnswer::Error { error_type, body }) => Outcome::FunctionError { error_type, body },
            None => {
                let failure = inner.shared.lock().failure.clone();
                let (outcome, reason) = match failure {
                    Some(why) => (Outcome::Failed(why), "failure"),
                    None => (Outcome::Timeout, "timeout"),
                };
                self.teardown(reason).await;
                return Invoked {
                    request_id,
                    outcome,
                    init,
                    duration,
                };
            }
        };
        let this = self.clone();
        let rid = request_id.clone();
        let answered = Instant::now();
        let completion = async move {
            let done = this.inner.shared.wait_until(deadline, Self::all_waiting).await;
            match done {
                Some(true) => {
                    let overhead = answered.elapsed();
                    this.inner.shared.update(|s| {
                        s.phase = Phase::Ready;
                        s.record(Trace::InvokeDone {
                            request_id: rid.clone(),
                        });
                    });
                    this.report(Report {
                        request_id: rid,
                        duration,
                        extension_overhead: overhead,
                        init,
                    });
                    this.freeze();
                }
                Some(false) => {
                    this.teardown("failure").await;
                }
                None => {
                    this.teardown("timeout").await;
                }
            }
        };
        if cfg.quirks.no_hold {
            drop(guard);
            tokio::spawn(completion);
        } else {
            tokio::spawn(async move {
                completion.await;
                drop(guard);
            });
        }
        Invoked {
            request_id,
            outcome,
            init,
            duration,
        }
    }

    fn report(&self, r: Report) {
        // Lambda bills whole milliseconds, rounded up.
        let billed = (r.duration.as_secs_f64() * 1000.0).ceil().max(1.0) as u64;
        let init = r
            .init
            .map(|d| format!(" Init Duration: {:.2} ms", d.as_secs_f64() * 1000.0))
            .unwrap_or_default();
        self.inner.logs.push(format!(
            "REPORT RequestId: {} Duration: {:.2} ms Billed Duration: {} ms Memory Size: {} MB{} Extension Overhead: {:.2} ms",
            r.request_id,
            r.duration.as_secs_f64() * 1000.0,
            billed,
            self.inner.cfg.memory_mb,
            init,
            r.extension_overhead.as_secs_f64() * 1000.0
        ));
        lock(&self.inner.reports).push(r);
    }

    /// Waits for the invoke in progress to complete (everyone back in `next`).
    pub async fn settle(&self) {
        let _guard = self.inner.invoke_lock.lock().await;
    }

    /// Shuts the environment down (reason `spindown` unless given) and reports how
    /// each process ended. The emulator can start a new environment afterwards.
    pub async fn shutdown(&self, reason: &str) -> ShutdownReport {
        let _guard = self.inner.invoke_lock.lock().await;
        self.teardown(reason).await
    }

    /// SHUTDOWN to extensions (deadline 2 s ahead, then SIGKILL), SIGTERM to the
    /// runtime (300 ms, then SIGKILL); leaves the environment in `Failed` after a
    /// reset and `Idle` after a spindown.
    async fn teardown(&self, reason: &str) -> ShutdownReport {
        let inner = &self.inner;
        let quirks = &inner.cfg.quirks;
        inner.shared.update(|s| s.phase = Phase::ShuttingDown);
        self.thaw();
        let procs: Vec<EnvProc> = std::mem::take(&mut *lock(&inner.procs));
        let deadline_ms = epoch_ms() + quirks.shutdown_deadline.as_millis() as u64;
        let deadline = Instant::now() + quirks.shutdown_deadline;
        let sent_at = Instant::now();
        let subscribed: Vec<String> = inner.shared.update(|s| {
            let event = json!({
                "eventType": "SHUTDOWN",
                "shutdownReason": reason,
                "deadlineMs": deadline_ms,
            });
            let mut subscribed = Vec::new();
            for e in s.extensions.iter_mut().filter(|e| e.external && e.wants("SHUTDOWN")) {
                match e.waiter.take() {
                    Some(w) => {
                        let _ = w.send(Delivery::Event(event.clone()));
                    }
                    None => e.pending_shutdown = Some(event.clone()),
                }
                subscribed.push(e.name.clone());
            }
            for name in &subscribed {
                s.record(Trace::ShutdownToExtension {
                    name: name.clone(),
                    reason: reason.to_owned(),
                    deadline_ms,
                });
            }
            // A runtime or extension still waiting in next gets nothing more.
            s.runtime.waiter = None;
            subscribed
        });
        let mut report = ShutdownReport {
            reason: reason.to_owned(),
            ..ShutdownReport::default()
        };
        let kill = |p: &EnvProc, report: &mut ShutdownReport| {
            if p.signal(Signal::SIGKILL) {
                report.killed.push(p.name.clone());
                inner
                    .shared
                    .update(|s| s.record(Trace::Killed { name: p.name.clone() }));
            }
        };
        for p in procs.iter().filter(|p| p.role == Role::Runtime) {
            p.signal(Signal::SIGTERM);
            if p.wait_exit(Duration::from_millis(300)).await.is_none() {
                kill(p, &mut report);
            }
        }
        for p in procs.iter().filter(|p| p.role == Role::Extension) {
            if !subscribed.contains(&p.name) {
                kill(p, &mut report);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match p.wait_exit(left).await {
                Some(_) => {
                    let exited = inner.shared.lock().trace.iter().rev().find_map(|t| match &t.what {
                        Trace::ProcessExited { name, .. } if *name == p.name => Some(t.at),
                        _ => None,
                    });
                    let after = exited.map(|at| at.saturating_duration_since(sent_at));
                    report.extensions.push((p.name.clone(), after));
                }
                None if quirks.no_kill => {
                    report.extensions.push((p.name.clone(), None));
                    report.alive_after_deadline.push(p.name.clone());
                }
                None => {
                    report.extensions.push((p.name.clone(), None));
                    kill(p, &mut report);
                }
            }
        }
        for p in procs.iter().filter(|p| report.alive_after_deadline.contains(&p.name)) {
            p.signal(Signal::SIGKILL);
        }
        drop(procs);
        inner.shared.update(|s| {
            s.reset();
            s.phase = if reason == "spindown" {
                Phase::Idle
            } else {
                Phase::Failed
            };
        });
        report
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
