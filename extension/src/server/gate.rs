//! Whether values may be served yet: always, except around a SnapStart snapshot.
//!
//! Under SnapStart, INIT runs once and the environment's memory and disk are copied
//! into every restored environment, possibly days later. So during that INIT no
//! value is fetched or served (a request gets 503 `SnapStartInit`), and after INIT's
//! `event/next` the first request (an after-restore hook, say) or INVOKE asks the
//! lifecycle to restore: fresh connections and credentials, then the prefetch. The
//! gate opens as soon as the prefetch's keys are registered in flight, so requests
//! waiting here join that one batch instead of calling on their own.
//!
//! On every other platform the gate is open from the start and costs one atomic
//! load per request.

use std::sync::atomic::{AtomicU8, Ordering::AcqRel, Ordering::Acquire, Ordering::Release};

use tokio::sync::Notify;

const OPEN: u8 = 0;
/// SnapStart INIT: values refused.
const SNAPSHOT: u8 = 1;
/// After INIT's `event/next`: the first request or INVOKE starts the restore.
const AWAITING_RESTORE: u8 = 2;
const RESTORING: u8 = 3;

pub struct Gate {
    state: AtomicU8,
    /// Wakes requests waiting for the restore to open the gate.
    opened: Notify,
    /// Wakes the lifecycle when the restore is asked for.
    asked: Notify,
}

/// The gate refuses values: this is a SnapStart INIT.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("values are not served during a SnapStart INIT")]
pub struct SnapshotInit;

impl Gate {
    /// Open from the start (every platform but SnapStart).
    pub fn open() -> Gate {
        Gate::with(OPEN)
    }

    /// Closed for a SnapStart INIT.
    pub fn for_snapshot() -> Gate {
        Gate::with(SNAPSHOT)
    }

    fn with(state: u8) -> Gate {
        Gate {
            state: AtomicU8::new(state),
            opened: Notify::new(),
            asked: Notify::new(),
        }
    }

    /// INIT is over: from now on the first caller asks for the restore.
    pub fn expect_restore(&self) {
        let _ = self.state.compare_exchange(SNAPSHOT, AWAITING_RESTORE, AcqRel, Acquire);
    }

    /// Waits until values may be served, asking for the restore if none was asked
    /// for yet.
    pub async fn pass(&self) -> Result<(), SnapshotInit> {
        loop {
            // Registered before the state is read, so an opening in between is not missed.
            let opened = self.opened.notified();
            match self.state.load(Acquire) {
                OPEN => return Ok(()),
                SNAPSHOT => return Err(SnapshotInit),
                AWAITING_RESTORE => {
                    self.ask();
                }
                _ => opened.await,
            }
        }
    }

    /// Asks for the restore (once); returns whether this call was the one that asked.
    pub fn ask(&self) -> bool {
        let first = self
            .state
            .compare_exchange(AWAITING_RESTORE, RESTORING, AcqRel, Acquire)
            .is_ok();
        if first {
            self.asked.notify_one();
        }
        first
    }

    /// Waits until a caller asks for the restore.
    pub async fn asked(&self) {
        loop {
            let asked = self.asked.notified();
            if self.state.load(Acquire) == RESTORING {
                return;
            }
            asked.await;
        }
    }

    /// The restore has registered its prefetch: serve.
    pub fn set_open(&self) {
        self.state.store(OPEN, Release);
        self.opened.notify_waiters();
    }

    pub fn is_open(&self) -> bool {
        self.state.load(Acquire) == OPEN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn open_gates_pass_and_snapshot_gates_refuse() {
        assert_eq!(Gate::open().pass().await, Ok(()));
        let gate = Gate::for_snapshot();
        assert_eq!(gate.pass().await, Err(SnapshotInit));
        assert!(!gate.ask(), "no restore is asked for during INIT");
    }

    #[tokio::test(start_paused = true)]
    async fn the_first_request_after_init_asks_for_the_restore_and_all_wait_for_it() {
        let gate = Arc::new(Gate::for_snapshot());
        gate.expect_restore();
        let waiting: Vec<_> = (0..3)
            .map(|_| {
                let gate = gate.clone();
                tokio::spawn(async move { gate.pass().await })
            })
            .collect();
        tokio::time::timeout(std::time::Duration::from_secs(5), gate.asked())
            .await
            .expect("asked");
        for w in &waiting {
            assert!(!w.is_finished(), "requests wait until the restore opens the gate");
        }
        assert!(!gate.ask(), "asked once");
        gate.set_open();
        for w in waiting {
            assert_eq!(w.await.expect("task"), Ok(()));
        }
        assert_eq!(gate.pass().await, Ok(()));
    }
}
