//! The processes of an execution environment: each in its own process group (so
//! freezing stops its children too), output captured with a `[name]` prefix, exit
//! reported to the emulator, killed when dropped; and `Processes`, the set of them
//! that is frozen (SIGSTOP) between invokes and thawed (SIGCONT) for the next one.

use std::path::Path;
use std::process::{ExitStatus, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use anyhow::{Context, Result};
use nix::sys::signal::{killpg, Signal};
use nix::unistd::Pid;
use tokio::process::Command;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::state::{Shared, Trace};
use crate::process::{capture, Logs};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    Runtime,
    Extension,
}

/// Longest wait, after a process exits, for the rest of its output.
const OUTPUT_DRAIN: Duration = Duration::from_millis(500);

/// Waits for every task in `tasks`.
async fn futures_join(tasks: Vec<JoinHandle<()>>) {
    for t in tasks {
        let _ = t.await;
    }
}

pub struct EnvProc {
    pub name: String,
    pub role: Role,
    pgid: Option<Pid>,
    exit: watch::Receiver<Option<ExitStatus>>,
    task: JoinHandle<()>,
}

impl EnvProc {
    /// Starts `program` with `args` and exactly `env` in `cwd` (the program's own
    /// folder when `None`), reporting its exit through `on_exit`.
    #[allow(clippy::too_many_arguments)]
    pub fn spawn(
        name: &str,
        role: Role,
        program: &Path,
        args: &[String],
        cwd: Option<&Path>,
        env: &[(String, String)],
        logs: Arc<Logs>,
        on_exit: impl FnOnce(ExitStatus) + Send + 'static,
    ) -> Result<EnvProc> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .env_clear()
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        if let Some(dir) = cwd.or_else(|| program.parent()) {
            cmd.current_dir(dir);
        }
        let mut child = cmd.spawn().with_context(|| format!("starting {}", program.display()))?;
        let pgid = child.id().and_then(|id| i32::try_from(id).ok()).map(Pid::from_raw);
        let mut readers = Vec::new();
        if let Some(out) = child.stdout.take() {
            readers.push(tokio::spawn(capture(out, logs.clone(), name.to_owned(), true)));
        }
        if let Some(err) = child.stderr.take() {
            readers.push(tokio::spawn(capture(err, logs, name.to_owned(), true)));
        }
        let (tx, rx) = watch::channel(None);
        let task = tokio::spawn(async move {
            if let Ok(status) = child.wait().await {
                // Reported first, so whoever sees the exit also finds it in the trace.
                on_exit(status);
                // Whoever waits for the exit then finds its last lines in the logs: the
                // pipes are read to their end first (briefly: a child it left behind
                // may hold them open).
                let _ = tokio::time::timeout(OUTPUT_DRAIN, futures_join(readers)).await;
                let _ = tx.send(Some(status));
            }
        });
        Ok(EnvProc {
            name: name.to_owned(),
            role,
            pgid,
            exit: rx,
            task,
        })
    }

    /// Signals the whole process group; false when it is gone.
    pub fn signal(&self, sig: Signal) -> bool {
        match self.pgid {
            Some(pgid) if self.exited().is_none() => killpg(pgid, sig).is_ok(),
            _ => false,
        }
    }

    /// The process group it leads (its pid).
    pub fn pgid(&self) -> Option<i32> {
        self.pgid.map(Pid::as_raw)
    }

    pub fn exited(&self) -> Option<ExitStatus> {
        *self.exit.borrow()
    }

    /// Waits for the exit, at most `timeout`.
    pub async fn wait_exit(&self, timeout: Duration) -> Option<ExitStatus> {
        let mut rx = self.exit.clone();
        tokio::time::timeout(timeout, rx.wait_for(Option::is_some))
            .await
            .ok()
            .and_then(|r| r.ok().and_then(|s| *s))
    }
}

impl Drop for EnvProc {
    fn drop(&mut self) {
        if self.exited().is_none() {
            if let Some(pgid) = self.pgid {
                let _ = killpg(pgid, Signal::SIGKILL);
            }
        }
        self.task.abort();
    }
}

/// The running processes of the environment, and whether they are frozen.
pub(crate) struct Processes {
    list: Mutex<Vec<EnvProc>>,
    /// Whether the configuration freezes at all (Lambda does; `FunctionConfig::freezes`).
    enabled: bool,
    frozen: AtomicBool,
}

impl Processes {
    pub(crate) fn new(enabled: bool) -> Self {
        Processes {
            list: Mutex::new(Vec::new()),
            enabled,
            frozen: AtomicBool::new(false),
        }
    }

    fn list(&self) -> MutexGuard<'_, Vec<EnvProc>> {
        self.list.lock().unwrap_or_else(PoisonError::into_inner)
    }

    pub(crate) fn push(&self, proc: EnvProc) {
        self.list().push(proc);
    }

    pub(crate) fn names(&self) -> Vec<String> {
        self.list().iter().map(|p| p.name.clone()).collect()
    }

    /// (name, process group) of every live process.
    pub(crate) fn groups(&self) -> Vec<(String, i32)> {
        self.list()
            .iter()
            .filter(|p| p.exited().is_none())
            .filter_map(|p| p.pgid().map(|g| (p.name.clone(), g)))
            .collect()
    }

    /// Takes every process out of the set (for shutdown); they die when dropped.
    pub(crate) fn take_all(&self) -> Vec<EnvProc> {
        std::mem::take(&mut *self.list())
    }

    /// A new environment starts thawed.
    pub(crate) fn start_thawed(&self) {
        self.frozen.store(false, Ordering::SeqCst);
    }

    /// SIGSTOP to every process group, once, between invokes.
    pub(crate) fn freeze(&self, shared: &Shared) {
        if self.enabled {
            self.stop_all(shared);
        }
    }

    /// SIGSTOP to every process group, once, whatever the configuration says (a
    /// SnapStart snapshot stops everything).
    pub(crate) fn stop_all(&self, shared: &Shared) {
        if self.frozen.swap(true, Ordering::SeqCst) {
            return;
        }
        for p in self.list().iter() {
            p.signal(Signal::SIGSTOP);
        }
        shared.update(|s| {
            s.frozen = true;
            s.record(Trace::Frozen);
        });
    }

    /// SIGCONT to every process group, if frozen.
    pub(crate) fn thaw(&self, shared: &Shared) {
        if !self.frozen.swap(false, Ordering::SeqCst) {
            return;
        }
        // Recorded before the signals, so nothing a thawed process does predates it.
        shared.update(|s| {
            s.frozen = false;
            s.record(Trace::Thawed);
        });
        for p in self.list().iter() {
            p.signal(Signal::SIGCONT);
        }
    }
}
