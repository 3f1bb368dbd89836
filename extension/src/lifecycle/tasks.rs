//! The tasks a running sidecar owns (the server, the refresher, the SnapStart
//! restore) and how they end: told to stop by the shutdown token, then waited for
//! against the one deadline of the whole stop, and aborted, by name, if still running.

use std::sync::Mutex;

use tokio::task::JoinHandle;
use tokio::time::Instant;
use tracing::warn;

use super::lock;

#[derive(Default)]
pub struct Tasks {
    held: Mutex<Vec<(&'static str, JoinHandle<()>)>>,
}

impl Tasks {
    pub fn add(&self, name: &'static str, task: JoinHandle<()>) {
        lock(&self.held).push((name, task));
    }

    /// Waits for every task until `deadline`; returns how many had to be aborted.
    /// They all run meanwhile, so waiting in turn costs no more than waiting together.
    pub async fn stop(&self, deadline: Instant) -> usize {
        let held = std::mem::take(&mut *lock(&self.held));
        let mut aborted = 0;
        for (name, task) in held {
            let abort = task.abort_handle();
            match tokio::time::timeout_at(deadline, task).await {
                Ok(Ok(())) => {}
                Ok(Err(e)) if e.is_cancelled() => {}
                Ok(Err(e)) => warn!(task = name, error = %e, "task failed"),
                Err(_) => {
                    warn!(task = name, "task did not stop in time; aborted");
                    abort.abort();
                    aborted += 1;
                }
            }
        }
        aborted
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;
    use tokio_util::sync::CancellationToken;

    #[tokio::test]
    async fn tasks_that_heed_the_token_end_and_one_that_does_not_is_aborted_at_the_deadline() {
        let stop = CancellationToken::new();
        let tasks = Tasks::default();
        for name in ["server", "refresher"] {
            let stop = stop.clone();
            tasks.add(name, tokio::spawn(async move { stop.cancelled().await }));
        }
        let (dropped_tx, dropped_rx) = tokio::sync::oneshot::channel::<()>();
        tasks.add(
            "stuck",
            tokio::spawn(async move {
                let _dropped_when_aborted = dropped_tx;
                std::future::pending::<()>().await;
            }),
        );
        stop.cancel();
        let started = Instant::now();
        let aborted = tasks.stop(Instant::now() + Duration::from_millis(200)).await;
        assert_eq!(aborted, 1);
        assert!(started.elapsed() < Duration::from_secs(2), "{:?}", started.elapsed());
        // The abort really ends the stuck task: its sender is dropped.
        tokio::time::timeout(Duration::from_secs(5), dropped_rx)
            .await
            .expect("aborted task ended")
            .expect_err("sender dropped, nothing sent");
        assert_eq!(tasks.stop(Instant::now()).await, 0, "nothing is held twice");
    }
}
