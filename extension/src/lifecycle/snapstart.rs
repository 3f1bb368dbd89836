//! SnapStart: nothing secret in the snapshot, and a clean start in every clone.
//!
//! INIT runs once; then the environment's memory and disk are snapshotted and
//! restored into many environments, possibly days later, with no event to
//! extensions. So during INIT no value is fetched (the gate answers 503), and
//! `SECRETS_SIDECAR_REQUIRED` is checked with metadata-only calls (DescribeSecret,
//! DescribeParameters) that return no value. Just before INIT's `event/next` the
//! upstream clients are dropped. The first request or INVOKE after that is the
//! restore: fresh connections and credentials (the snapshot's are stale in a
//! clone), a new seed for retry and refresh jitter (clones must not refresh in
//! lockstep), then the prefetch in one batch, which requests racing it join, and
//! only then the `SECRETS_SIDECAR_FILES` (written during INIT they would be on the
//! snapshot's disk).

use std::sync::Arc;

use tokio::task::JoinSet;
use tokio::time::Instant;
use tracing::{error, info};

use super::{Running, StartupFailure};
use crate::backend::{Upstream, Via};
use crate::cache::reseed_jitter;
use crate::config::Platform;
use crate::model::SecretRef;

impl Running {
    fn snapshotting(&self) -> bool {
        self.platform == Platform::SnapStart
    }

    /// Checks that every REQUIRED reference exists, without fetching any value.
    pub(super) async fn check_required_metadata(&self) -> Vec<(SecretRef, String)> {
        let deadline = Instant::now() + self.config.init_timeout;
        let mut checks = JoinSet::new();
        for r in self.config.required.iter().cloned() {
            let upstream = self.upstream.clone();
            checks.spawn(async move {
                let result = upstream.exists(&Via::HOME, &r).await;
                (r, result)
            });
        }
        let mut missing = Vec::new();
        let mut answered = Vec::new();
        while let Ok(Some(done)) = tokio::time::timeout_at(deadline, checks.join_next()).await {
            if let Ok((r, result)) = done {
                if let Err(e) = result {
                    missing.push((r.clone(), format!("{} ({})", e.kind.label(), e.detail)));
                }
                answered.push(r);
            }
        }
        checks.shutdown().await;
        for r in &self.config.required {
            if !answered.contains(r) {
                missing.push((r.clone(), "timeout (start-up budget spent)".to_owned()));
            }
        }
        info!(
            required = self.config.required.len(),
            missing = missing.len(),
            "SnapStart INIT: REQUIRED checked with metadata only; no value fetched"
        );
        missing
    }

    /// INIT is over (its `event/next` comes next): under SnapStart, drop the
    /// clients and wait for the first request or INVOKE to restore.
    pub fn expect_restore(self: &Arc<Self>) {
        if !self.snapshotting() {
            return;
        }
        self.upstream.reset();
        self.app.sdk_keys.clear();
        self.app.gate.expect_restore();
        let running = self.clone();
        let task = tokio::spawn(async move {
            tokio::select! {
                () = running.shutdown.cancelled() => {}
                () = running.app.gate.asked() => running.restore().await,
            }
        });
        self.tasks.add("restore", task);
    }

    /// The restore (SnapStart; once; does nothing elsewhere): fresh clients and
    /// jitter seed, then the start-up prefetch in one batch. Requests wait at the
    /// gate only until the prefetch's keys are registered in flight.
    pub async fn restore(&self) {
        if !self.snapshotting() {
            return;
        }
        self.restored
            .get_or_init(|| async {
                let started = Instant::now();
                self.app.gate.ask();
                self.upstream.reset();
                self.app.sdk_keys.clear();
                reseed_jitter();
                let plan = self.app.cache.plan_prefetch(&self.config.startup_refs());
                self.app.gate.set_open();
                let report = self
                    .app
                    .cache
                    .prefetch(plan, Instant::now() + self.config.init_timeout)
                    .await;
                self.app.set_ready();
                // Files only now: written during INIT they would be in the snapshot.
                self.sync_files().await;
                let missing = report.missing(&self.config.required);
                if let Err(failure) = StartupFailure::check(missing, self.app.cache.overflow()) {
                    // INIT is long over: nothing to fail; say it loudly instead.
                    error!(message = %failure, "after the SnapStart restore");
                }
                info!(
                    stored = report.stored,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "restored from the SnapStart snapshot"
                );
            })
            .await;
    }
}
