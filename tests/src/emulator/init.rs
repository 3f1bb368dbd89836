//! Init: starting a new execution environment, as Lambda does.
//!
//! Every executable of the extensions folder starts first, in name order; the
//! runtime starts only once each of them has registered (or had its registration
//! refused); init is done when the runtime (in SnapStart perhaps in `restore/next`,
//! on Managed Instances at least one worker of it) and every extension wait in
//! `next`. The whole init has `FunctionConfig::init_limit` (10 s on demand, 130 s or
//! the function timeout elsewhere); a failure or the bound resets the environment
//! with [`ShutdownReason::Failure`]. Each new environment gets an empty `/tmp`.
//!
//! An invoke that finds no environment (the first one, or one after a reset) inits
//! on demand and reports the init duration with its answer.
//!
//! The runtime process: a custom runtime's `bootstrap` as it is; a managed
//! runtime's command, through `AWS_LAMBDA_EXEC_WRAPPER` when the function sets one
//! (Lambda honours the wrapper on managed runtimes only), see `runtime_command`.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::time::Duration;

use anyhow::Result;
use tokio::time::Instant;

use super::config::{FunctionConfig, Runtime};
use super::env;
use super::procs::{EnvProc, Role};
use super::state::{Phase, ShutdownReason, Trace};
use super::Emulator;

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

/// Empties the environment's `/tmp` (a new environment starts with nothing there).
fn empty_dir(dir: &Path) {
    let Ok(entries) = std::fs::read_dir(dir) else { return };
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let _ = match entry.file_type() {
            Ok(t) if t.is_dir() => std::fs::remove_dir_all(&path),
            _ => std::fs::remove_file(&path),
        };
    }
}

/// How the runtime process starts. A custom runtime: the task root's `bootstrap`,
/// as it is. A managed runtime: its command, or (as its bootstrap script does when
/// the function sets `AWS_LAMBDA_EXEC_WRAPPER`) the wrapper with the command as
/// its arguments. Lambda reads the wrapper on managed runtimes only.
pub(super) fn runtime_command(cfg: &FunctionConfig, env: &[(String, String)]) -> (PathBuf, Vec<String>) {
    match &cfg.runtime {
        Runtime::Custom => (cfg.bootstrap.clone(), Vec::new()),
        Runtime::Managed { command, .. } => {
            let wrapper = env
                .iter()
                .find(|(k, v)| k == "AWS_LAMBDA_EXEC_WRAPPER" && !v.is_empty())
                .map(|(_, v)| v.clone());
            match (wrapper, command.split_first()) {
                (Some(w), _) => (PathBuf::from(w), command.clone()),
                (None, Some((program, args))) => (PathBuf::from(program), args.to_vec()),
                (None, None) => (cfg.bootstrap.clone(), Vec::new()),
            }
        }
    }
}

fn file_name(p: &Path) -> String {
    p.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

impl Emulator {
    /// Inits when there is no environment (first invoke, or after a reset): returns
    /// the init duration then, `None` when the environment was already up.
    pub(super) async fn init_on_demand(&self) -> Result<Option<Duration>, String> {
        if matches!(self.inner.shared.lock().phase, Phase::Idle | Phase::Failed) {
            self.start_environment().await.map(Some)
        } else {
            Ok(None)
        }
    }

    /// Starts extensions, then the runtime, and waits until all of them are in
    /// `next`. The caller holds the turn.
    pub(super) async fn start_environment(&self) -> Result<Duration, String> {
        let inner = &self.inner;
        let cfg = &inner.cfg;
        let started = Instant::now();
        let deadline = started + cfg.init_limit();
        inner.generation.fetch_add(1, Ordering::SeqCst);
        empty_dir(inner.tmp.path());
        let executables = extension_executables(&cfg.extensions_dir);
        let names: Vec<String> = executables.iter().map(|p| file_name(p)).collect();
        inner.shared.update(|s| {
            s.reset();
            s.phase = Phase::Initializing;
            s.started_extensions = names.clone();
        });
        inner.procs.start_thawed();
        let api = self.runtime_api();
        let place = env::Place {
            runtime_api: &api,
            stream: &inner.stream,
            tmp: inner.tmp.path(),
        };
        let ext_env = env::extension_env(cfg, &place);
        for (path, name) in executables.iter().zip(&names) {
            match self.spawn(name, Role::Extension, path, &[], None, &ext_env) {
                Ok(()) => inner
                    .shared
                    .update(|s| s.record(Trace::ExtensionStarted { name: name.clone() })),
                Err(e) => inner
                    .shared
                    .update(|s| s.fail(format!("cannot start extension {name}: {e}"))),
            }
        }
        // The runtime starts after every extension registered (refused ones count:
        // they will not register again; so do ones the lax quirk forgot, which may
        // have registered and failed before this check ran); the lax quirk starts it
        // at once.
        if !cfg.quirks.runtime_before_registration {
            let count = names.len();
            let registered = inner
                .shared
                .wait_until(deadline, |s| {
                    let settled = s.extensions.iter().filter(|e| e.external).count() + s.refused.len();
                    settled + s.forgotten.len() >= count
                })
                .await;
            if registered != Some(true) {
                return Err(self.fail_init("extensions did not all register").await);
            }
        }
        let rt_env = env::runtime_env(cfg, &place);
        let (program, args) = runtime_command(cfg, &rt_env);
        let task_root = cfg.bootstrap.parent();
        if let Err(e) = self.spawn("runtime", Role::Runtime, &program, &args, task_root, &rt_env) {
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
                s.runtime.waiting_for_anything() && s.extensions.iter().all(|e| e.nexts >= 1)
            })
            .await;
        if ready != Some(true) {
            return Err(self.fail_init("init did not complete").await);
        }
        inner.shared.update(|s| {
            s.phase = Phase::Ready;
            // The Telemetry API takes subscriptions during init only.
            s.telemetry_closed = true;
            s.record(Trace::InitDone);
        });
        inner.procs.freeze(&inner.shared);
        Ok(started.elapsed())
    }

    /// Resets a failed init and says why it failed (the first recorded failure, or
    /// `what` when the bound passed).
    async fn fail_init(&self, what: &str) -> String {
        let why = {
            let s = self.inner.shared.lock();
            s.failure
                .clone()
                .unwrap_or_else(|| format!("{what} within {:?}", self.inner.cfg.init_limit()))
        };
        self.inner.shared.update(|s| s.fail(why.clone()));
        self.teardown(ShutdownReason::Failure).await;
        why
    }

    /// Starts one process of the environment; its exit fails the environment unless
    /// it happens during shutdown (or the lax quirk forgets a failed extension). On
    /// Managed Instances an extension's exit, even with code 0, is `Extension.Crash`.
    fn spawn(
        &self,
        name: &str,
        role: Role,
        program: &Path,
        args: &[String],
        cwd: Option<&Path>,
        env: &[(String, String)],
    ) -> Result<()> {
        let shared = self.inner.shared.clone();
        let ignore = self.inner.cfg.quirks.ignore_extension_failures;
        let crash = if self.inner.cfg.mode.is_managed() && role == Role::Extension {
            "Extension.Crash: "
        } else {
            ""
        };
        let who = name.to_owned();
        let proc = EnvProc::spawn(
            name,
            role,
            program,
            args,
            cwd,
            env,
            self.inner.logs.clone(),
            move |status| {
                shared.update(|s| {
                    s.record(Trace::ProcessExited {
                        name: who.clone(),
                        code: status.code(),
                    });
                    let ignorable = role == Role::Extension && ignore;
                    if ignorable {
                        // The deliberately lax emulator forgets the extension instead.
                        s.forget_extension(&who);
                    } else if s.phase != Phase::ShuttingDown {
                        s.fail(format!("{crash}{who} exited ({status})"));
                    }
                });
            },
        )?;
        self.inner.procs.push(proc);
        Ok(())
    }
}
