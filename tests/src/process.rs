//! Child processes for tests: killed when dropped (also while a test panics), with
//! stdout and stderr captured line by line so tests can wait for and scan logs.

use std::process::{ExitStatus, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context, Result};
use tokio::io::{AsyncBufReadExt, AsyncRead, BufReader};
use tokio::process::{Child, Command};
use tokio::sync::Notify;

/// Captured output of a process, shared with the reader tasks.
#[derive(Default)]
pub struct Logs {
    lines: Mutex<Vec<String>>,
    changed: Notify,
}

impl Logs {
    pub fn lines(&self) -> Vec<String> {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    pub fn push(&self, line: String) {
        self.lines
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .push(line);
        self.changed.notify_waiters();
    }

    /// Waits until a line satisfies `pred`, at most `timeout`.
    pub async fn wait_for(&self, timeout: Duration, pred: impl Fn(&str) -> bool) -> Result<String> {
        let search = async {
            loop {
                let notified = self.changed.notified();
                if let Some(l) = self.lines().into_iter().find(|l| pred(l)) {
                    return l;
                }
                notified.await;
            }
        };
        tokio::time::timeout(timeout, search).await.map_err(|_| {
            anyhow!(
                "no matching log line within {timeout:?}; got:\n{}",
                self.lines().join("\n")
            )
        })
    }
}

/// A running child process.
pub struct Proc {
    pub name: String,
    child: Child,
    pub logs: Arc<Logs>,
    /// The tasks copying stdout and stderr into `logs`; they end at the pipes' EOF.
    captures: Vec<tokio::task::JoinHandle<()>>,
}

/// How long [`Proc::wait_exit`] waits, after the exit, for the last lines to be
/// read (a child of the process could hold the pipes open for longer).
const DRAIN: Duration = Duration::from_secs(5);

impl Proc {
    /// Spawns `cmd` with piped output; the process is killed when this is dropped.
    pub fn spawn(name: &str, mut cmd: Command) -> Result<Proc> {
        cmd.stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(Stdio::null())
            .kill_on_drop(true);
        let mut child = cmd.spawn().with_context(|| format!("spawning {name}"))?;
        let logs = Arc::new(Logs::default());
        let mut captures = Vec::new();
        if let Some(out) = child.stdout.take() {
            captures.push(tokio::spawn(capture(out, logs.clone(), name.to_owned(), false)));
        }
        if let Some(err) = child.stderr.take() {
            captures.push(tokio::spawn(capture(err, logs.clone(), name.to_owned(), false)));
        }
        Ok(Proc {
            name: name.to_owned(),
            child,
            logs,
            captures,
        })
    }

    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// Sends a signal by name (TERM, INT, STOP, CONT, KILL) with the `kill` utility.
    pub async fn signal(&self, sig: &str) -> Result<()> {
        let pid = self.pid().ok_or_else(|| anyhow!("{} has exited", self.name))?;
        let status = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .status()
            .await?;
        if !status.success() {
            return Err(anyhow!("kill -{sig} {pid} failed"));
        }
        Ok(())
    }

    /// Waits for the process to exit, at most `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .map_err(|_| anyhow!("{} still running after {timeout:?}", self.name))??;
        // The exit can be seen before the last lines are read: a test that reads
        // the logs next must find everything the process wrote.
        for capture in std::mem::take(&mut self.captures) {
            let _ = tokio::time::timeout(DRAIN, capture).await;
        }
        Ok(status)
    }

    pub fn try_exit(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().ok().flatten()
    }

    /// Kills the process and waits for it.
    pub async fn kill(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// Copies lines from `r` into `logs` (prefixed with `[name] ` when `prefixed`);
/// `HARNESS_ECHO=1` also prints them, for debugging a test.
pub async fn capture<R: AsyncRead + Unpin>(r: R, logs: Arc<Logs>, name: String, prefixed: bool) {
    let echo = std::env::var_os("HARNESS_ECHO").is_some();
    let mut lines = BufReader::new(r).lines();
    while let Ok(Some(line)) = lines.next_line().await {
        if echo {
            eprintln!("[{name}] {line}");
        }
        logs.push(if prefixed { format!("[{name}] {line}") } else { line });
    }
}
