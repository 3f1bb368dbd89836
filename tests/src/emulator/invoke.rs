//! Invoke: one event through the environment, in Lambda's order.
//!
//! 1. Init on demand when there is no environment (`init.rs`); in SnapStart mode,
//!    snapshot and restore it if no test did (`snapstart.rs`).
//! 2. Hold until every process is back in `next`
//!    ([`Emulator::hold_until_everyone_is_back_in_next`]: the rule lives there).
//! 3. Thaw, then deliver: INVOKE to the extensions' parked `next` first, then the
//!    event to the runtime's ([`Emulator::deliver`]).
//! 4. Wait for the runtime's answer within the function timeout; no answer resets the
//!    environment (`timeout`, or `failure` when a process failed meanwhile).
//! 5. Return the answer to the caller at once, and end the invoke in the background
//!    ([`Emulator::end_invoke`]): when everyone is back in `next`, the REPORT line and
//!    the freeze; if they are not back by the deadline, a reset. The invoke's turn
//!    stays with that ending, so invoke N+1 starts only after it.
//!
//! Managed Instances run invokes differently (`managed.rs`), with the same delivery.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use serde_json::{json, Value};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::state::{epoch_ms, Delivery, Invocation, Phase, RuntimeAnswer, ShutdownReason, State, Trace};
use super::{lock, telemetry, Emulator, Turn};

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
    /// Refused before any environment was touched (Lambda's 400, e.g. an invoke
    /// without a tenant in tenant isolation mode).
    Rejected {
        error_type: String,
        message: String,
    },
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

/// **The rule: invoke N+1 waits until every process is back in `next`.** Lambda
/// delivers the next event only when the runtime and every extension subscribed to
/// INVOKE have called `next` again after the previous one (`lambda-contract.md`,
/// "Ordering" 2). The same condition ends an invoke (REPORT, freeze).
fn everyone_back_in_next(s: &State) -> bool {
    s.runtime.waiting()
        && s.extensions
            .iter()
            .filter(|e| e.wants("INVOKE"))
            .all(|e| e.waiter.is_some())
}

impl Emulator {
    /// Steps 1 to 5 of the header; `turn` is this invoke's, taken by the caller.
    /// In tenant isolation mode `tenant` is the invoke's (see [`Emulator::keep_to_tenant`]).
    pub(super) async fn run_invoke(&self, turn: Turn, payload: Bytes, tenant: Option<&str>) -> Invoked {
        let cfg = &self.inner.cfg;
        let request_id = uuid::Uuid::new_v4().to_string();
        let failed = |why, init| Invoked {
            request_id: request_id.clone(),
            outcome: Outcome::Failed(why),
            init,
            duration: Duration::ZERO,
        };
        if let Some(tenant) = tenant {
            self.keep_to_tenant(tenant).await;
        }
        let init = match self.init_on_demand().await {
            Ok(init) => init,
            Err(why) => return failed(why, None),
        };
        if let Err(why) = self.restore_on_demand().await {
            return failed(why, init);
        }
        if let Some(tenant) = tenant {
            self.bind_tenant(tenant);
        }
        if let Err(why) = self.hold_until_everyone_is_back_in_next().await {
            self.teardown(ShutdownReason::Failure).await;
            return failed(why, init);
        }
        self.inner.procs.thaw(&self.inner.shared);
        let deadline = Instant::now() + cfg.timeout;
        let invocation = self.invocation(&request_id, payload);
        let started = Instant::now();
        let answer = self.deliver(invocation);
        let answer = self.wait_for_answer(answer, deadline).await;
        let duration = started.elapsed();
        let outcome = match answer {
            Some(RuntimeAnswer::Response(body)) => Outcome::Response(body),
            Some(RuntimeAnswer::Error { error_type, body }) => Outcome::FunctionError { error_type, body },
            None => {
                let (outcome, reason) = match self.inner.shared.lock().failure.clone() {
                    Some(why) => (Outcome::Failed(why), ShutdownReason::Failure),
                    None => (Outcome::Timeout, ShutdownReason::Timeout),
                };
                let status = if reason == ShutdownReason::Timeout {
                    "timeout"
                } else {
                    "error"
                };
                self.inner.shared.update(|s| {
                    let record = json!({"requestId": request_id, "status": status});
                    let record = telemetry::with_tenant(s, &cfg.quirks, record);
                    telemetry::emit(s, "platform.runtimeDone", record);
                    s.statuses.insert(request_id.clone(), status);
                });
                self.platform_report(&request_id, duration);
                self.teardown(reason).await;
                return Invoked {
                    request_id,
                    outcome,
                    init,
                    duration,
                };
            }
        };
        self.end_invoke(
            turn,
            Report {
                request_id: request_id.clone(),
                duration,
                extension_overhead: Duration::ZERO,
                init,
            },
            deadline,
        );
        Invoked {
            request_id,
            outcome,
            init,
            duration,
        }
    }

    /// A new invocation of `payload`, due within the function timeout from now.
    pub(super) fn invocation(&self, request_id: &str, payload: Bytes) -> Invocation {
        let cfg = &self.inner.cfg;
        Invocation {
            request_id: request_id.to_owned(),
            deadline_ms: epoch_ms() + cfg.timeout.as_millis() as u64,
            payload,
            function_arn: cfg.function_arn(),
            trace_id: format!("Root=1-{:08x}-{}", epoch_ms() / 1000, uuid::Uuid::new_v4().simple()),
            tenant: self.inner.shared.lock().tenant.clone(),
        }
    }

    /// **Tenant isolation: an environment serves one tenant.** A warm environment
    /// bound to another tenant never gets this invoke: it is spun down (the normal
    /// shutdown, reason `spindown`) and the invoke starts a new one (a cold start).
    /// The `tenants_share_environment` quirk keeps it instead.
    async fn keep_to_tenant(&self, tenant: &str) {
        let other = {
            let s = self.inner.shared.lock();
            let up = !matches!(s.phase, Phase::Idle | Phase::Failed);
            up && s.tenant.as_deref().is_some_and(|t| t != tenant)
        };
        if !other {
            return;
        }
        if self.inner.cfg.quirks.tenants_share_environment {
            self.inner.shared.update(|s| s.tenant = None);
            return;
        }
        self.teardown(ShutdownReason::Spindown).await;
    }

    /// Binds the environment to `tenant` at its first invoke (the tenant is not
    /// known during init).
    fn bind_tenant(&self, tenant: &str) {
        self.inner.shared.update(|s| {
            if s.tenant.is_none() {
                s.tenant = Some(tenant.to_owned());
                s.record(Trace::TenantBound {
                    tenant: tenant.to_owned(),
                });
            }
        });
    }

    /// Enforces [`everyone_back_in_next`] before an invoke is delivered, within the
    /// function timeout; a failure or the bound fails the invoke (the caller resets).
    ///
    /// It normally finds the rule met at once, since the previous invoke's ending kept
    /// the turn until the same condition held (and init until everyone's first
    /// `next`); this is the check right before delivery, whatever came before. Under
    /// the `no_hold` quirk (the lax emulators: the turn goes at the answer) it waits
    /// for the runtime alone, which the contract tests must catch.
    async fn hold_until_everyone_is_back_in_next(&self) -> Result<(), String> {
        let shared = &self.inner.shared;
        let deadline = Instant::now() + self.inner.cfg.timeout;
        let held = if self.inner.cfg.quirks.no_hold {
            shared.wait_until(deadline, |s| s.runtime.waiting()).await
        } else {
            shared.wait_until(deadline, everyone_back_in_next).await
        };
        if held == Some(true) {
            return Ok(());
        }
        Err(shared
            .lock()
            .failure
            .clone()
            .unwrap_or_else(|| "not every process returned to next".into()))
    }

    /// Releases the invocation to the parked `next` requests: the INVOKE event to every
    /// extension subscribed to it, then the invocation to the runtime (the reverse
    /// under the `runtime_first` quirk). Returns where the runtime's answer will arrive.
    pub(super) fn deliver(&self, invocation: Invocation) -> oneshot::Receiver<RuntimeAnswer> {
        let (tx, rx) = oneshot::channel();
        self.inner.shared.update(|s| self.release(s, &invocation, tx));
        rx
    }

    /// Managed Instances: [`Emulator::deliver`], but only to a runtime worker waiting in
    /// `next` now, found under the same lock that hands it the invocation, so two
    /// invokes that saw the same idle worker never both count on it (the second gets
    /// `None` and waits for the next one).
    pub(super) fn deliver_to_waiting_worker(
        &self,
        invocation: &Invocation,
    ) -> Option<oneshot::Receiver<RuntimeAnswer>> {
        let (tx, rx) = oneshot::channel();
        self.inner.shared.update(|s| {
            if !s.runtime.waiting() {
                return None;
            }
            self.release(s, invocation, tx);
            Some(rx)
        })
    }

    fn release(&self, s: &mut State, invocation: &Invocation, tx: oneshot::Sender<RuntimeAnswer>) {
        let quirks = &self.inner.cfg.quirks;
        // Extensions see the same epoch deadline as the runtime (unless a quirk skews it).
        let ext_deadline = (invocation.deadline_ms as i64 + quirks.extension_deadline_skew_ms).max(0) as u64;
        let mut event = json!({
            "eventType": "INVOKE",
            "deadlineMs": ext_deadline,
            "requestId": invocation.request_id,
            "invokedFunctionArn": invocation.function_arn,
            "tracing": {"type": "X-Amzn-Trace-Id", "value": invocation.trace_id},
        });
        if let (Some(t), true) = (&invocation.tenant, quirks.tenant_in_extension_event) {
            event["tenantId"] = Value::from(t.clone());
        }
        // Emitted before anyone gets the invoke; delivered after the buffer's timeout.
        let start = json!({"requestId": invocation.request_id, "version": "$LATEST"});
        telemetry::emit(s, "platform.start", telemetry::with_tenant(s, quirks, start));
        s.phase = Phase::Invoking;
        s.inflight.insert(invocation.request_id.clone(), tx);
        if quirks.runtime_first {
            invoke_runtime(s, invocation);
            invoke_extensions(s, &event, &invocation.request_id, ext_deadline);
        } else {
            invoke_extensions(s, &event, &invocation.request_id, ext_deadline);
            invoke_runtime(s, invocation);
        }
    }

    /// The runtime's answer, or `None` when the deadline passed or a process failed.
    pub(super) async fn wait_for_answer(
        &self,
        answer: oneshot::Receiver<RuntimeAnswer>,
        deadline: Instant,
    ) -> Option<RuntimeAnswer> {
        tokio::select! {
            a = answer => a.ok(),
            // Never true: it returns at the deadline or on a recorded failure.
            _ = self.inner.shared.wait_until(deadline, |_| false) => None,
        }
    }

    /// Ends an answered invoke once everyone is back in `next` (by `deadline`): the
    /// REPORT line and the freeze, or a reset (`failure` when a process failed,
    /// `timeout` when the deadline passed). The caller already has its answer, so this
    /// runs in a task the emulator owns; the task keeps `turn` until it is done, which
    /// is what holds invoke N+1 back (the `no_hold` quirk lets it go at once).
    fn end_invoke(&self, turn: Turn, mut report: Report, deadline: Instant) {
        let turn = (!self.inner.cfg.quirks.no_hold).then_some(turn);
        let shared = self.inner.shared.clone();
        // Weak while waiting: dropping the emulator stops this task instead of
        // waiting for it.
        let emulator = Arc::downgrade(&self.inner);
        let answered = Instant::now();
        let ending = async move {
            let _turn = turn;
            let back = shared.wait_until(deadline, everyone_back_in_next).await;
            let Some(inner) = emulator.upgrade() else { return };
            let this = Emulator { inner };
            match back {
                Some(true) => {
                    report.extension_overhead = answered.elapsed();
                    shared.update(|s| {
                        s.phase = Phase::Ready;
                        s.record(Trace::InvokeDone {
                            request_id: report.request_id.clone(),
                        });
                    });
                    this.report(report);
                    this.inner.procs.freeze(&shared);
                }
                Some(false) => {
                    this.teardown(ShutdownReason::Failure).await;
                }
                None => {
                    this.teardown(ShutdownReason::Timeout).await;
                }
            }
        };
        let mut endings = lock(&self.inner.invoke_endings);
        // Forget the endings that are over, so the set holds only running ones.
        while endings.try_join_next().is_some() {}
        endings.spawn(ending);
    }

    /// `platform.report` for an ended invoke, to the Telemetry API's subscribers,
    /// with the runtime's status (`success`, `error`, `timeout`).
    fn platform_report(&self, request_id: &str, duration: Duration) {
        let cfg = &self.inner.cfg;
        let ms = duration.as_secs_f64() * 1000.0;
        self.inner.shared.update(|s| {
            let status = s.statuses.remove(request_id).unwrap_or("success");
            let record = json!({
                "requestId": request_id,
                "status": status,
                "metrics": {
                    "durationMs": (ms * 1000.0).round() / 1000.0,
                    "billedDurationMs": ms.ceil().max(1.0),
                    "memorySizeMB": cfg.memory_mb,
                    // Not measured: a fixed figure within the memory size.
                    "maxMemoryUsedMB": cfg.memory_mb.min(64),
                },
            });
            let record = telemetry::with_tenant(s, &cfg.quirks, record);
            telemetry::emit(s, "platform.report", record);
        });
    }

    /// Writes the REPORT line to the logs and keeps its figures (and sends
    /// `platform.report`).
    pub(super) fn report(&self, r: Report) {
        self.platform_report(&r.request_id, r.duration);
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
}

/// INVOKE to every extension subscribed to it and parked in `next`.
fn invoke_extensions(s: &mut State, event: &Value, request_id: &str, deadline_ms: u64) {
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
            request_id: request_id.to_owned(),
            deadline_ms,
        });
    }
}

/// The invocation to the runtime (its longest-waiting worker), if it is parked in `next`.
fn invoke_runtime(s: &mut State, invocation: &Invocation) {
    if let Some(w) = s.runtime.take_waiter() {
        let _ = w.send(Delivery::Invocation(invocation.clone()));
        s.record(Trace::InvokeToRuntime {
            request_id: invocation.request_id.clone(),
            deadline_ms: invocation.deadline_ms,
        });
    }
}
