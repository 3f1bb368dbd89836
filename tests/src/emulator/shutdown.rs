//! Shutdown: ending an execution environment, as Lambda does.
//!
//! Every process is thawed; each extension subscribed to SHUTDOWN gets the event
//! (at once if it waits in `next`, at its next `next` otherwise) with a deadline 2 s
//! ahead; the runtime gets SIGTERM and 300 ms, then SIGKILL; extensions still alive
//! at the deadline (and unsubscribed ones at once) get SIGKILL. The reason decides
//! where the environment stands afterwards ([`ShutdownReason::phase_after`]): idle
//! after a spindown, reset after a timeout or a failure (the next invoke is a cold
//! start). The invoke and init paths call [`Emulator::teardown`] for their resets.
//!
//! On Managed Instances (as in AWS's emulator) the deadline is set first, the runtime
//! is stopped (600 ms grace), and only then do extensions get SHUTDOWN; the reason is
//! `spindown` or `failure` (a timeout is a failure there).
//!
//! An extension that calls `next` again after its SHUTDOWN breaks the contract: the
//! API records [`Trace::NextAfterShutdown`], and when the extension then ends, the log
//! gets the line AWS's emulator writes ("failed to transition to EXITED: State
//! transition is not allowed (current state: Ready)", or `ShutdownFailed` when it had
//! to be killed).

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;

use super::procs::{EnvProc, Role};
use super::state::{epoch_ms, Delivery, Phase, ShutdownReason, Trace};
use super::Emulator;

/// What happened to each process at shutdown.
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    pub reason: ShutdownReason,
    /// (extension, time from SHUTDOWN to exit, or None when it had to be killed).
    pub extensions: Vec<(String, Option<Duration>)>,
    pub killed: Vec<String>,
    /// Processes still running after the deadline (only with `Quirks::no_kill`).
    pub alive_after_deadline: Vec<String>,
    /// Extensions that called `next` after their SHUTDOWN (a contract violation).
    pub next_after_shutdown: Vec<String>,
}

impl ShutdownReport {
    fn new(reason: ShutdownReason) -> Self {
        ShutdownReport {
            reason,
            extensions: Vec::new(),
            killed: Vec::new(),
            alive_after_deadline: Vec::new(),
            next_after_shutdown: Vec::new(),
        }
    }
}

impl Emulator {
    /// Shuts the environment down with `reason` (the header's sequence) and reports
    /// how each process ended. The caller holds the turn.
    pub(super) async fn teardown(&self, reason: ShutdownReason) -> ShutdownReport {
        let inner = &self.inner;
        let quirks = &inner.cfg.quirks;
        let mode = inner.cfg.mode;
        let reason = mode.shutdown_reason(reason);
        inner.shared.update(|s| s.phase = Phase::ShuttingDown);
        inner.procs.thaw(&inner.shared);
        let procs = inner.procs.take_all();
        let deadline_ms = epoch_ms() + quirks.shutdown_deadline.as_millis() as u64;
        let deadline = Instant::now() + quirks.shutdown_deadline;
        let runtime_first = mode.is_managed();
        let mut sent_at = Instant::now();
        let mut subscribed = Vec::new();
        if !runtime_first {
            subscribed = self.send_shutdown(reason, deadline_ms);
        }
        let mut report = ShutdownReport::new(reason);
        for p in procs.iter().filter(|p| p.role == Role::Runtime) {
            p.signal(Signal::SIGTERM);
            if p.wait_exit(mode.runtime_grace()).await.is_none() {
                self.kill(p, &mut report);
            }
        }
        if runtime_first {
            sent_at = Instant::now();
            subscribed = self.send_shutdown(reason, deadline_ms);
        }
        for p in procs.iter().filter(|p| p.role == Role::Extension) {
            if !subscribed.contains(&p.name) {
                self.kill(p, &mut report);
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            match p.wait_exit(left).await {
                Some(_) => {
                    let after = self.exited_at(&p.name).map(|at| at.saturating_duration_since(sent_at));
                    report.extensions.push((p.name.clone(), after));
                }
                None if quirks.no_kill => {
                    report.extensions.push((p.name.clone(), None));
                    report.alive_after_deadline.push(p.name.clone());
                }
                None => {
                    report.extensions.push((p.name.clone(), None));
                    self.kill(p, &mut report);
                }
            }
        }
        // Even the lax `no_kill` emulator leaves nothing running behind it.
        for p in procs.iter().filter(|p| report.alive_after_deadline.contains(&p.name)) {
            p.signal(Signal::SIGKILL);
        }
        drop(procs);
        report.next_after_shutdown = self.log_next_after_shutdown(&report);
        inner.shared.update(|s| {
            s.reset();
            s.phase = reason.phase_after();
        });
        report
    }

    /// Writes AWS's emulator's line for each extension that called `next` after its
    /// SHUTDOWN (it is left in state Ready, from which neither exiting nor being
    /// killed is a valid transition); returns their names.
    fn log_next_after_shutdown(&self, report: &ShutdownReport) -> Vec<String> {
        let violators: Vec<(String, String)> = {
            let s = self.inner.shared.lock();
            s.extensions
                .iter()
                .filter(|e| e.limbo.is_some())
                .map(|e| (e.name.clone(), e.id.clone()))
                .collect()
        };
        for (name, id) in &violators {
            let to = if report.killed.contains(name) {
                "ShutdownFailed"
            } else {
                "EXITED"
            };
            self.inner.logs.push(format!(
                "WARN {name} ({id}) failed to transition to {to}: State transition is not allowed (current state: Ready)"
            ));
        }
        violators.into_iter().map(|(name, _)| name).collect()
    }

    /// SHUTDOWN to every external extension subscribed to it; returns their names.
    /// Parked `next` requests of the runtime get nothing more.
    fn send_shutdown(&self, reason: ShutdownReason, deadline_ms: u64) -> Vec<String> {
        self.inner.shared.update(|s| {
            let event = json!({
                "eventType": "SHUTDOWN",
                "shutdownReason": reason.label(),
                "deadlineMs": deadline_ms,
            });
            let mut subscribed = Vec::new();
            for e in s.extensions.iter_mut().filter(|e| e.external && e.wants("SHUTDOWN")) {
                match e.waiter.take() {
                    Some(w) => {
                        let _ = w.send(Delivery::Event(event.clone()));
                        e.shutdown_delivered = true;
                    }
                    // Busy (not in `next`): it gets the event at its next `next`.
                    None => e.pending_shutdown = Some(event.clone()),
                }
                subscribed.push(e.name.clone());
            }
            for name in &subscribed {
                s.record(Trace::ShutdownToExtension {
                    name: name.clone(),
                    reason,
                    deadline_ms,
                });
            }
            s.runtime.waiters.clear();
            s.runtime.restore_waiter = None;
            subscribed
        })
    }

    fn kill(&self, p: &EnvProc, report: &mut ShutdownReport) {
        if p.signal(Signal::SIGKILL) {
            report.killed.push(p.name.clone());
            self.inner
                .shared
                .update(|s| s.record(Trace::Killed { name: p.name.clone() }));
        }
    }

    /// When `name` exited, from the trace (recorded by the exit watcher).
    fn exited_at(&self, name: &str) -> Option<Instant> {
        self.inner.shared.lock().trace.iter().rev().find_map(|t| match &t.what {
            Trace::ProcessExited { name: n, .. } if n == name => Some(t.at),
            _ => None,
        })
    }
}
