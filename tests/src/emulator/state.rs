//! The execution environment's state: who registered, who waits in `next`, the
//! invocations in flight, the SnapStart stage, failures, and a trace of everything
//! with timestamps; and the words for it ([`Phase`], [`ShutdownReason`], [`SnapStage`]).
//!
//! One mutex guards it (no `.await` happens under it); every change wakes the
//! waiters of [`Shared::wait_until`], which re-check their condition.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use serde_json::Value;
use tokio::sync::{oneshot, Notify};
use tokio::time::Instant;

use super::credentials::Issued;
use super::snapshot::Finding;
use super::telemetry::Subscriber;

pub fn epoch_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Not initialised (first start, or after a reset).
    Idle,
    Initializing,
    Ready,
    Invoking,
    ShuttingDown,
    /// Init or an invoke failed; the next invoke starts a new environment.
    Failed,
}

/// Why an environment shuts down: the `shutdownReason` of the SHUTDOWN event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ShutdownReason {
    /// An orderly end (the environment is no longer needed).
    Spindown,
    /// An invoke ran past the function timeout.
    Timeout,
    /// The environment failed: an init error, a crash, an `exit/error`.
    Failure,
}

impl ShutdownReason {
    /// The lower-case string Lambda sends (`spindown`, `timeout`, `failure`).
    pub fn label(self) -> &'static str {
        match self {
            ShutdownReason::Spindown => "spindown",
            ShutdownReason::Timeout => "timeout",
            ShutdownReason::Failure => "failure",
        }
    }

    /// Where the environment stands once shut down: a spindown leaves it idle; a
    /// timeout or failure is a reset, and the next invoke is a cold start.
    pub fn phase_after(self) -> Phase {
        match self {
            ShutdownReason::Spindown => Phase::Idle,
            ShutdownReason::Timeout | ShutdownReason::Failure => Phase::Failed,
        }
    }
}

/// Where a SnapStart environment stands between its init and its first invoke.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum SnapStage {
    /// Not snapshotted yet (every other mode stays here).
    #[default]
    NotYet,
    /// Snapshotted; every process stopped until the restore.
    Taken,
    Restored,
}

impl std::fmt::Display for ShutdownReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.label())
    }
}

/// What one `next` waiter receives.
pub enum Delivery {
    Event(Value),
    Invocation(Invocation),
}

#[derive(Clone, Debug)]
pub struct Invocation {
    pub request_id: String,
    pub deadline_ms: u64,
    pub payload: Bytes,
    pub function_arn: String,
    pub trace_id: String,
    /// Tenant isolation: the invoke's tenant (`Lambda-Runtime-Aws-Tenant-Id`).
    pub tenant: Option<String>,
}

/// How the runtime answered an invocation.
#[derive(Clone, Debug)]
pub enum RuntimeAnswer {
    Response(Bytes),
    Error { error_type: String, body: Bytes },
}

pub struct Extension {
    pub id: String,
    pub name: String,
    pub external: bool,
    pub events: Vec<String>,
    pub waiter: Option<oneshot::Sender<Delivery>>,
    pub nexts: u64,
    /// SHUTDOWN owed to an extension that was busy when the environment shut down.
    pub pending_shutdown: Option<Value>,
    /// It has been handed its SHUTDOWN: a further `next` breaks the contract.
    pub shutdown_delivered: bool,
    /// A `next` after SHUTDOWN, parked for good (as Lambda's own emulator does).
    pub limbo: Option<oneshot::Sender<Delivery>>,
}

impl Extension {
    pub fn wants(&self, event: &str) -> bool {
        self.events.iter().any(|e| e == event)
    }
}

#[derive(Default)]
pub struct Runtime {
    /// Parked `invocation/next` requests: one, or one per worker on Managed Instances.
    pub waiters: Vec<oneshot::Sender<Delivery>>,
    /// A parked `restore/next` (SnapStart): answered at the restore.
    pub restore_waiter: Option<oneshot::Sender<()>>,
    pub nexts: u64,
}

impl Runtime {
    /// Whether the runtime (some worker of it) waits in `invocation/next`.
    pub fn waiting(&self) -> bool {
        self.waiters.iter().any(|w| !w.is_closed())
    }

    /// Whether it waits for an event of any kind (`invocation/next` or `restore/next`).
    pub fn waiting_for_anything(&self) -> bool {
        self.waiting() || self.restore_waiter.as_ref().is_some_and(|w| !w.is_closed())
    }

    /// The longest-waiting worker still connected.
    pub fn take_waiter(&mut self) -> Option<oneshot::Sender<Delivery>> {
        self.waiters.retain(|w| !w.is_closed());
        (!self.waiters.is_empty()).then(|| self.waiters.remove(0))
    }
}

/// One entry of the trace: what happened, when.
#[derive(Clone, Debug)]
pub struct TraceEvent {
    pub at: Instant,
    pub epoch_ms: u64,
    pub what: Trace,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Trace {
    ExtensionStarted {
        name: String,
    },
    Registered {
        name: String,
        external: bool,
        events: Vec<String>,
    },
    RegistrationRefused {
        name: String,
        status: u16,
        why: String,
    },
    RuntimeStarted,
    ExtensionNext {
        name: String,
    },
    /// A contract violation: `name` called `next` after it was handed SHUTDOWN.
    NextAfterShutdown {
        name: String,
    },
    RuntimeNext,
    /// SnapStart: the runtime waits in `restore/next`.
    RuntimeRestoreNext,
    InitDone,
    InvokeToExtension {
        name: String,
        request_id: String,
        deadline_ms: u64,
    },
    InvokeToRuntime {
        request_id: String,
        deadline_ms: u64,
    },
    RuntimeAnswered {
        request_id: String,
    },
    InvokeDone {
        request_id: String,
    },
    Frozen,
    Thawed,
    /// Provisioned concurrency: the environment idles (frozen) from here ...
    IdleStarted,
    /// ... to here.
    IdleEnded,
    /// SnapStart: the snapshot was taken; what the scan found (never the values).
    Snapshot {
        findings: Vec<Finding>,
    },
    /// SnapStart: the environment was restored (processes continued).
    Restored,
    /// SnapStart: the runtime's `restore/next` was answered.
    RestoreToRuntime,
    /// The container credentials endpoint answered (`ok`: the token matched) with
    /// set number `set` (none when refused).
    CredentialsServed {
        ok: bool,
        set: Option<u32>,
    },
    /// The role's credentials rotated: the endpoint hands out set `set` from now on.
    CredentialsRotated {
        set: u32,
    },
    ShutdownToExtension {
        name: String,
        reason: ShutdownReason,
        deadline_ms: u64,
    },
    ProcessExited {
        name: String,
        code: Option<i32>,
    },
    Killed {
        name: String,
    },
    ErrorReported {
        source: String,
        path: String,
        error_type: String,
    },
    Failure {
        why: String,
    },
    /// Tenant isolation: the environment is bound to `tenant` (at its first invoke).
    TenantBound {
        tenant: String,
    },
    /// Tenant isolation: an invoke was refused before it touched any environment.
    InvokeRefused {
        error_type: String,
        why: String,
    },
    /// Extension `name` subscribed to the Telemetry API for `types`.
    TelemetrySubscribed {
        name: String,
        types: Vec<String>,
    },
    /// A Telemetry API subscription was refused (`name`: the extension, or the
    /// identifier when unknown).
    TelemetryRefused {
        name: String,
        status: u16,
        error_type: String,
    },
    /// A batch of telemetry reached `name`'s listener: the events' types, in order,
    /// and the `record.requestId` of each (empty when it has none).
    TelemetryDelivered {
        name: String,
        types: Vec<String>,
        request_ids: Vec<String>,
    },
    /// A batch `name`'s listener never took (bounded retries): dropped.
    TelemetryDropped {
        name: String,
        count: usize,
        why: String,
    },
}

pub struct State {
    pub phase: Phase,
    pub extensions: Vec<Extension>,
    pub runtime: Runtime,
    pub runtime_started: bool,
    /// Names of the external extension executables started.
    pub started_extensions: Vec<String>,
    /// Closed at the runtime's first `next`: later registrations are refused.
    pub registration_closed: bool,
    /// Started extensions whose registration was refused (they count as settled).
    pub refused: Vec<String>,
    /// Extensions the lax quirk forgot after a failure (they count as settled too:
    /// one that registered and then failed at once must not hold the runtime back).
    pub forgotten: Vec<String>,
    /// Invocations delivered to the runtime and not answered yet, by request id.
    pub inflight: HashMap<String, oneshot::Sender<RuntimeAnswer>>,
    pub snap: SnapStage,
    pub failure: Option<String>,
    /// The credential set the container credentials endpoint hands out (the role's,
    /// so it outlives an environment, like the trace).
    pub credentials: Issued,
    /// Tenant isolation: the tenant this environment serves (bound at its first invoke).
    pub tenant: Option<String>,
    /// Whether the processes are frozen (SIGSTOP) now: telemetry waits for the thaw.
    pub frozen: bool,
    /// The environment's Telemetry API subscribers; dropping one ends its delivery.
    pub subscribers: Vec<Subscriber>,
    /// Closed at the end of init: later subscriptions are refused.
    pub telemetry_closed: bool,
    /// How the runtime answered each invocation (`success`, `error`), for `platform.report`.
    pub statuses: HashMap<String, &'static str>,
    pub trace: Vec<TraceEvent>,
}

impl State {
    fn new() -> Self {
        State {
            phase: Phase::Idle,
            extensions: Vec::new(),
            runtime: Runtime::default(),
            runtime_started: false,
            started_extensions: Vec::new(),
            registration_closed: false,
            refused: Vec::new(),
            forgotten: Vec::new(),
            inflight: HashMap::new(),
            snap: SnapStage::NotYet,
            failure: None,
            credentials: Issued::first(),
            tenant: None,
            frozen: false,
            subscribers: Vec::new(),
            telemetry_closed: false,
            statuses: HashMap::new(),
            trace: Vec::new(),
        }
    }

    pub fn record(&mut self, what: Trace) {
        self.trace.push(TraceEvent {
            at: Instant::now(),
            epoch_ms: epoch_ms(),
            what,
        });
    }

    /// Marks the environment failed (first reason wins).
    pub fn fail(&mut self, why: String) {
        if self.failure.is_none() && self.phase != Phase::ShuttingDown {
            self.record(Trace::Failure { why: why.clone() });
            self.failure = Some(why);
        }
    }

    /// The lax quirk: forget the extension named `name` instead of failing.
    pub fn forget_extension(&mut self, name: &str) {
        self.extensions.retain(|e| e.name != name);
        if !self.forgotten.iter().any(|n| n == name) {
            self.forgotten.push(name.to_owned());
        }
    }

    pub fn extension_mut(&mut self, id: &str) -> Option<&mut Extension> {
        self.extensions.iter_mut().find(|e| e.id == id)
    }

    /// Clears everything but the trace, for a new environment.
    pub fn reset(&mut self) {
        let trace = std::mem::take(&mut self.trace);
        let credentials = self.credentials;
        *self = State::new();
        self.trace = trace;
        self.credentials = credentials;
    }
}

pub struct Shared {
    state: Mutex<State>,
    changed: Notify,
}

impl Shared {
    pub fn new() -> Self {
        Shared {
            state: Mutex::new(State::new()),
            changed: Notify::new(),
        }
    }

    pub fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Changes the state and wakes everyone waiting on it.
    pub fn update<T>(&self, f: impl FnOnce(&mut State) -> T) -> T {
        let out = f(&mut self.lock());
        self.changed.notify_waiters();
        out
    }

    /// Waits until `cond` holds (true) or a failure is recorded (false), at most until `deadline` (None).
    pub async fn wait_until(&self, deadline: Instant, cond: impl Fn(&State) -> bool) -> Option<bool> {
        loop {
            let notified = self.changed.notified();
            tokio::pin!(notified);
            notified.as_mut().enable();
            {
                let s = self.lock();
                if cond(&s) {
                    return Some(true);
                }
                if s.failure.is_some() {
                    return Some(false);
                }
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return None;
            }
        }
    }

    pub fn trace(&self) -> Vec<TraceEvent> {
        self.lock().trace.clone()
    }
}

impl Default for Shared {
    fn default() -> Self {
        Self::new()
    }
}
