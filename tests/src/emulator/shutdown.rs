//! Shutdown: ending an execution environment, as Lambda does.
//!
//! Every process is thawed; each extension subscribed to SHUTDOWN gets the event
//! (at once if it waits in `next`, at its next `next` otherwise) with a deadline 2 s
//! ahead; the runtime gets SIGTERM and 300 ms, then SIGKILL; extensions still alive
//! at the deadline (and unsubscribed ones at once) get SIGKILL. The reason decides
//! where the environment stands afterwards ([`ShutdownReason::phase_after`]): idle
//! after a spindown, reset after a timeout or a failure (the next invoke is a cold
//! start). The invoke and init paths call [`Emulator::teardown`] for their resets.

use std::time::Duration;

use nix::sys::signal::Signal;
use serde_json::json;
use tokio::time::Instant;

use super::procs::{EnvProc, Role};
use super::state::{epoch_ms, Delivery, Phase, ShutdownReason, Trace};
use super::Emulator;

/// The runtime's grace between SIGTERM and SIGKILL.
const RUNTIME_GRACE: Duration = Duration::from_millis(300);

/// What happened to each process at shutdown.
#[derive(Clone, Debug)]
pub struct ShutdownReport {
    pub reason: ShutdownReason,
    /// (extension, time from SHUTDOWN to exit, or None when it had to be killed).
    pub extensions: Vec<(String, Option<Duration>)>,
    pub killed: Vec<String>,
    /// Processes still running after the deadline (only with `Quirks::no_kill`).
    pub alive_after_deadline: Vec<String>,
}

impl ShutdownReport {
    fn new(reason: ShutdownReason) -> Self {
        ShutdownReport {
            reason,
            extensions: Vec::new(),
            killed: Vec::new(),
            alive_after_deadline: Vec::new(),
        }
    }
}

impl Emulator {
    /// Shuts the environment down with `reason` (the header's sequence) and reports
    /// how each process ended. The caller holds the turn.
    pub(super) async fn teardown(&self, reason: ShutdownReason) -> ShutdownReport {
        let inner = &self.inner;
        let quirks = &inner.cfg.quirks;
        inner.shared.update(|s| s.phase = Phase::ShuttingDown);
        inner.procs.thaw(&inner.shared);
        let procs = inner.procs.take_all();
        let deadline_ms = epoch_ms() + quirks.shutdown_deadline.as_millis() as u64;
        let deadline = Instant::now() + quirks.shutdown_deadline;
        let sent_at = Instant::now();
        let subscribed = self.send_shutdown(reason, deadline_ms);
        let mut report = ShutdownReport::new(reason);
        for p in procs.iter().filter(|p| p.role == Role::Runtime) {
            p.signal(Signal::SIGTERM);
            if p.wait_exit(RUNTIME_GRACE).await.is_none() {
                self.kill(p, &mut report);
            }
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
        inner.shared.update(|s| {
            s.reset();
            s.phase = reason.phase_after();
        });
        report
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
            s.runtime.waiter = None;
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
