//! SnapStart: the snapshot after init, and the restore.
//!
//! - **Snapshot** ([`Emulator::snapshot`]): once init is done (every extension in
//!   `next`, the runtime in `invocation/next` or in `restore/next`), every process
//!   is stopped (SIGSTOP, whatever `FunctionConfig::freeze` says) and, once each shows
//!   as stopped, the memory and `/tmp` of the environment are scanned for the planted
//!   values (`snapshot.rs`). The result is returned and traced ([`Trace::Snapshot`]).
//! - **Restore** ([`Emulator::restore`]): after a pause (the days a snapshot may sit),
//!   every process continues; a runtime waiting in `restore/next` is answered (200,
//!   empty body, as AWS's emulator's restore renderer); extensions get no event, they
//!   simply continue in their pending `next`. The runtime's after-restore hooks have
//!   10 s to bring it back to `invocation/next`; then the environment is frozen until
//!   the first invoke, which proceeds as on demand.
//!
//! An invoke that finds an environment nobody snapshotted does both itself, with
//! nothing planted and no pause (`Emulator::restore_on_demand`).

use std::time::Duration;

use bytes::Bytes;
use http::{Response, StatusCode};
use http_body_util::Full;
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::api::{refuse, Resp};
use super::config::FunctionConfig;
use super::snapshot::{self, SnapshotReport};
use super::state::{Phase, ShutdownReason, SnapStage, Trace};
use super::{Emulator, Mode, Shared};

/// How long the stopped processes may take to show as stopped.
const STOP_LIMIT: Duration = Duration::from_secs(10);
/// Lambda's limit for after-restore hooks.
const RESTORE_LIMIT: Duration = Duration::from_secs(10);

impl Emulator {
    /// Takes the snapshot of a SnapStart environment (initialising it first if there
    /// is none) and scans it for each of `planted` (the values a test seeded; a
    /// finding names a value by its index here, never by its content). Fails outside
    /// SnapStart mode, and for an environment already snapshotted.
    pub async fn snapshot(&self, planted: &[impl AsRef<[u8]>]) -> Result<SnapshotReport, String> {
        let _turn = self.take_turn().await;
        self.init_on_demand().await?;
        let planted: Vec<Vec<u8>> = planted.iter().map(|v| v.as_ref().to_vec()).collect();
        self.take_snapshot(planted).await
    }

    /// Restores the snapshotted environment after `pause` (held as the turn, so no
    /// invoke comes in between).
    pub async fn restore(&self, pause: Duration) -> Result<(), String> {
        let _turn = self.take_turn().await;
        self.restore_after(pause).await
    }

    /// For an invoke in SnapStart mode: snapshot and restore an environment that
    /// nobody did. The caller holds the turn.
    pub(super) async fn restore_on_demand(&self) -> Result<(), String> {
        if self.inner.cfg.mode != Mode::SnapStart {
            return Ok(());
        }
        let stage = self.inner.shared.lock().snap;
        if stage == SnapStage::NotYet {
            self.take_snapshot(Vec::new()).await?;
        }
        if stage != SnapStage::Restored {
            self.restore_after(Duration::ZERO).await?;
        }
        Ok(())
    }

    async fn take_snapshot(&self, planted: Vec<Vec<u8>>) -> Result<SnapshotReport, String> {
        let inner = &self.inner;
        if inner.cfg.mode != Mode::SnapStart {
            return Err(format!("a snapshot needs SnapStart mode, not {}", inner.cfg.mode));
        }
        {
            let s = inner.shared.lock();
            if s.phase != Phase::Ready {
                return Err(format!("no initialised environment to snapshot ({:?})", s.phase));
            }
            if s.snap != SnapStage::NotYet {
                return Err("this environment was snapshotted already".into());
            }
        }
        inner.procs.stop_all(&inner.shared);
        let groups = inner.procs.groups();
        let processes = crate::net::poll(STOP_LIMIT, "every process of the environment stopped", || {
            let pids = snapshot::processes_in_groups(&groups);
            async move { pids.iter().all(|(pid, _)| snapshot::is_stopped(*pid)).then_some(pids) }
        })
        .await
        .map_err(|e| e.to_string())?;
        let report = if inner.cfg.quirks.blind_snapshot {
            SnapshotReport {
                values: planted.len(),
                ..SnapshotReport::default()
            }
        } else {
            let tmp = inner.tmp.path().to_owned();
            tokio::task::spawn_blocking(move || snapshot::scan(&processes, &tmp, &planted))
                .await
                .map_err(|e| format!("the snapshot scan failed: {e}"))?
        };
        inner.shared.update(|s| {
            s.snap = SnapStage::Taken;
            s.record(Trace::Snapshot {
                findings: report.findings.clone(),
            });
        });
        Ok(report)
    }

    async fn restore_after(&self, pause: Duration) -> Result<(), String> {
        let inner = &self.inner;
        let shared = &inner.shared;
        if shared.lock().snap != SnapStage::Taken {
            return Err("there is no snapshot to restore".into());
        }
        tokio::time::sleep(pause).await;
        shared.update(|s| {
            s.snap = SnapStage::Restored;
            s.record(Trace::Restored);
        });
        inner.procs.thaw(shared);
        shared.update(|s| {
            if let Some(w) = s.runtime.restore_waiter.take() {
                let _ = w.send(());
                s.record(Trace::RestoreToRuntime);
            }
        });
        let back = shared
            .wait_until(Instant::now() + RESTORE_LIMIT, |s| s.runtime.waiting())
            .await;
        if back != Some(true) {
            let why = shared.lock().failure.clone().unwrap_or_else(|| {
                format!("the runtime did not return to next within {RESTORE_LIMIT:?} of the restore")
            });
            shared.update(|s| s.fail(why.clone()));
            self.teardown(ShutdownReason::Failure).await;
            return Err(why);
        }
        inner.procs.freeze(shared);
        Ok(())
    }
}

/// `GET /2018-06-01/runtime/restore/next` (SnapStart only): parks until the restore
/// (at once under the `restore_next_at_once` quirk); 403 once restored.
pub(super) async fn restore_next(shared: &Shared, cfg: &FunctionConfig) -> Resp {
    if cfg.mode != Mode::SnapStart {
        return refuse(StatusCode::NOT_FOUND, "InvalidRequest", "unknown path");
    }
    let (tx, rx) = oneshot::channel();
    let parked = shared.update(|s| {
        if s.snap == SnapStage::Restored {
            return None;
        }
        s.runtime.nexts += 1;
        s.registration_closed = true;
        s.record(Trace::RuntimeRestoreNext);
        if cfg.quirks.restore_next_at_once {
            s.record(Trace::RestoreToRuntime);
            return Some(false);
        }
        s.runtime.restore_waiter = Some(tx);
        Some(true)
    });
    let restored = Response::new(Full::new(Bytes::new()));
    match parked {
        None => refuse(
            StatusCode::FORBIDDEN,
            "InvalidStateTransition",
            "the environment was restored already",
        ),
        Some(false) => restored,
        Some(true) => match rx.await {
            Ok(()) => restored,
            Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "Runtime.Gone", "environment ended"),
        },
    }
}
