//! Managed Instances' invokes: several at once, nothing frozen.
//!
//! The environment keeps running between and during invokes; the runtime serves up
//! to `AWS_LAMBDA_MAX_CONCURRENCY` invokes at once, one per worker waiting in
//! `invocation/next`, and extensions (subscribed to SHUTDOWN only) see none of them.
//! So an invoke here:
//!
//! 1. inits on demand, alone (the turn held alone), then shares the turn with the
//!    other invokes (init and shutdown wait until every shared holder is done);
//! 2. takes one of `max_concurrency` slots (one, under `managed_one_at_a_time`);
//! 3. waits, within the function timeout, for a runtime worker in `next` and
//!    delivers to it (the same delivery as on demand), claiming the worker under the
//!    lock that finds it, since several invokes wait for workers at once;
//! 4. returns the answer; no answer (a timeout or a failure) resets the environment
//!    with `failure`, the only reason besides `spindown` Managed Instances give.
//!
//! The rule "invoke N+1 waits until every process is back in `next`" does not apply.

use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use tokio::time::Instant;

use super::invoke::{Invoked, Outcome, Report};
use super::state::{Phase, RuntimeAnswer, ShutdownReason, Trace};
use super::Emulator;

fn needs_init(phase: Phase) -> bool {
    matches!(phase, Phase::Idle | Phase::Failed)
}

impl Emulator {
    /// Steps 1 to 4 of the header.
    pub(super) async fn run_managed_invoke(&self, payload: Bytes) -> Invoked {
        let inner = &self.inner;
        let shared = &inner.shared;
        let request_id = uuid::Uuid::new_v4().to_string();
        let ended = |outcome, init, duration| Invoked {
            request_id: request_id.clone(),
            outcome,
            init,
            duration,
        };
        let mut init = None;
        let turn = loop {
            let turn = self.take_shared_turn().await;
            if !needs_init(shared.lock().phase) {
                break turn;
            }
            drop(turn);
            let _alone = self.take_turn().await;
            match self.init_on_demand().await {
                Ok(took) => init = init.or(took),
                Err(why) => return ended(Outcome::Failed(why), init, Duration::ZERO),
            }
        };
        let generation = inner.generation.load(Ordering::SeqCst);
        let Ok(slot) = inner.slots.clone().acquire_owned().await else {
            return ended(Outcome::Failed("the emulator is closing".into()), init, Duration::ZERO);
        };
        let deadline = Instant::now() + inner.cfg.timeout;
        let started = Instant::now();
        let mut delivered = None;
        while delivered.is_none() {
            if shared.wait_until(deadline, |s| s.runtime.waiting()).await != Some(true) {
                break;
            }
            // Thaws only under the `managed_freezes` quirk: Lambda never froze it.
            inner.procs.thaw(shared);
            // Another invoke may have taken the worker that woke this one: then wait
            // for the next.
            delivered = self.deliver_to_waiting_worker(&self.invocation(&request_id, payload.clone()));
        }
        let answer = match delivered {
            Some(answer) => self.wait_for_answer(answer, deadline).await,
            None => None,
        };
        let duration = started.elapsed();
        let outcome = match answer {
            Some(RuntimeAnswer::Response(body)) => Outcome::Response(body),
            Some(RuntimeAnswer::Error { error_type, body }) => Outcome::FunctionError { error_type, body },
            None => {
                let (outcome, reason) = match shared.lock().failure.clone() {
                    Some(why) => (Outcome::Failed(why), ShutdownReason::Failure),
                    None => (Outcome::Timeout, ShutdownReason::Timeout),
                };
                drop(slot);
                drop(turn);
                let _alone = self.take_turn().await;
                // Another invoke may have reset it (and a new one started) meanwhile.
                let same = inner.generation.load(Ordering::SeqCst) == generation;
                if same && !needs_init(shared.lock().phase) {
                    self.teardown(reason).await;
                }
                return ended(outcome, init, duration);
            }
        };
        let idle = shared.update(|s| {
            s.record(Trace::InvokeDone {
                request_id: request_id.clone(),
            });
            let idle = s.inflight.is_empty();
            if idle && s.phase == Phase::Invoking {
                s.phase = Phase::Ready;
            }
            idle
        });
        self.report(Report {
            request_id: request_id.clone(),
            duration,
            extension_overhead: Duration::ZERO,
            init,
        });
        drop(slot);
        if idle {
            // Does nothing unless the `managed_freezes` quirk asks for it.
            inner.procs.freeze(shared);
        }
        drop(turn);
        ended(outcome, init, duration)
    }
}
