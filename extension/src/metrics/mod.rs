//! What the sidecar counts about the requests it serves: requests by route,
//! responses by status class, answers by cache outcome, refusals by reason, auth
//! failures, connections, and the SDK route's operations. Both front doors and the
//! lifecycle use these; `report` renders them (with what the cache and the backend
//! count about themselves) as `/metrics` and the shutdown summary, `emf` as
//! CloudWatch Embedded Metric Format lines.
//!
//! Relaxed atomics and no locks on the hot path. The counters every request bumps
//! are split into per-thread shards on separate cache lines ([`Counter`]), so worker
//! threads do not bounce one line between cores; reading sums the shards. Counts
//! are exact; only their ordering relative to each other is not.

pub mod emf;
pub mod report;

pub use report::{Snapshot, Totals};

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};

use crate::cache::Outcome;

const SHARDS: usize = 8;

#[derive(Default)]
#[repr(align(128))]
struct Shard(AtomicU64);

/// A counter sharded by thread.
#[derive(Default)]
pub struct Counter {
    shards: [Shard; SHARDS],
}

thread_local! {
    static SHARD: Cell<usize> = const { Cell::new(usize::MAX) };
}
static NEXT_SHARD: AtomicUsize = AtomicUsize::new(0);

fn shard() -> usize {
    SHARD.with(|s| {
        if s.get() == usize::MAX {
            s.set(NEXT_SHARD.fetch_add(1, Relaxed) % SHARDS);
        }
        s.get()
    })
}

impl Counter {
    pub fn add(&self, n: u64) {
        self.shards[shard()].0.fetch_add(n, Relaxed);
    }

    pub fn get(&self) -> u64 {
        self.shards.iter().map(|s| s.0.load(Relaxed)).sum()
    }
}

/// Which route a request took.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    SecretsManager,
    Ssm,
    Ping,
    Metrics,
    /// `POST /`: the AWS SDKs' own protocol.
    Sdk,
    Other,
}

impl Route {
    pub const ALL: [Route; 6] = [
        Route::SecretsManager,
        Route::Ssm,
        Route::Ping,
        Route::Metrics,
        Route::Sdk,
        Route::Other,
    ];

    fn label(self) -> &'static str {
        match self {
            Route::SecretsManager => "secretsmanager",
            Route::Ssm => "ssm",
            Route::Ping => "ping",
            Route::Metrics => "metrics",
            Route::Sdk => "sdk",
            Route::Other => "other",
        }
    }
}

/// The server's own counters.
#[derive(Default)]
pub struct Metrics {
    requests: [Counter; Route::ALL.len()],
    /// Indexed by status class: 2xx, 3xx, 4xx, 5xx.
    responses: [Counter; 4],
    outcomes: [Counter; Outcome::ALL.len()],
    refusals: [AtomicU64; Refused::ALL.len()],
    auth_failures: AtomicU64,
    connections_refused: AtomicU64,
    connections_open: AtomicU64,
    /// SDK-route requests by operation and how they were handled (`sdk::route`):
    /// a short list, bounded, since operation names come from callers.
    sdk: std::sync::Mutex<Vec<(Box<str>, &'static str, u64)>>,
}

/// How an SDK-route request was handled.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Handled {
    Cache,
    Forward,
    /// The signature was not accepted.
    Refused,
    /// Answered with an AWS error (not found, validation, throttling, the allowlist).
    Error,
}

impl Handled {
    pub fn label(self) -> &'static str {
        match self {
            Handled::Cache => "cache",
            Handled::Forward => "forward",
            Handled::Refused => "refused",
            Handled::Error => "error",
        }
    }
}

/// Why the sidecar itself refused to answer with a value (upstream failures are
/// counted by the cache, per kind).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    /// The id is outside `SECRETS_SIDECAR_ALLOW`, or a look-alike of one inside it.
    NotAllowed,
    /// `roleArn` names a role the allowlist does not list.
    RoleNotAllowed,
    /// A value asked for during a SnapStart INIT.
    SnapStartInit,
    /// Another tenant's instance of a `{tenant}` template.
    OtherTenant,
    /// A `{tenant}` template's id while the tenant was not known.
    TenantUnknown,
}

impl Refused {
    pub const ALL: [Refused; 5] = [
        Refused::NotAllowed,
        Refused::RoleNotAllowed,
        Refused::SnapStartInit,
        Refused::OtherTenant,
        Refused::TenantUnknown,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Refused::NotAllowed => "not_allowed",
            Refused::RoleNotAllowed => "role_not_allowed",
            Refused::SnapStartInit => "snapstart_init",
            Refused::OtherTenant => "other_tenant",
            Refused::TenantUnknown => "tenant_unknown",
        }
    }
}

/// Distinct (operation, handling) pairs counted; more are counted as `other`.
const MAX_SDK_SERIES: usize = 64;

impl Metrics {
    pub fn request(&self, route: Route) {
        self.requests[route as usize].add(1);
    }

    pub fn response(&self, status: u16) {
        if let Some(slot) = (status / 100)
            .checked_sub(2)
            .and_then(|i| self.responses.get(i as usize))
        {
            slot.add(1);
        }
    }

    /// Counts one SDK-route request (`handled`: cache, forward, refused or error).
    pub fn sdk(&self, operation: &str, handled: Handled) {
        let handled = handled.label();
        let mut series = self.sdk.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let operation =
            if series.len() >= MAX_SDK_SERIES && !series.iter().any(|(o, h, _)| &**o == operation && *h == handled) {
                "other"
            } else {
                operation
            };
        match series.iter_mut().find(|(o, h, _)| &**o == operation && *h == handled) {
            Some(entry) => entry.2 += 1,
            None => series.push((operation.into(), handled, 1)),
        }
    }

    pub fn outcome(&self, outcome: Outcome) {
        self.outcomes[outcome.index()].add(1);
    }

    pub fn refused(&self, why: Refused) {
        self.refusals[why as usize].fetch_add(1, Relaxed);
    }

    pub fn refusals(&self, why: Refused) -> u64 {
        self.refusals[why as usize].load(Relaxed)
    }

    pub fn auth_failure(&self) {
        self.auth_failures.fetch_add(1, Relaxed);
    }

    pub fn connection_refused(&self) {
        self.connections_refused.fetch_add(1, Relaxed);
    }

    pub fn connection_opened(&self) {
        self.connections_open.fetch_add(1, Relaxed);
    }

    pub fn connection_closed(&self) {
        self.connections_open.fetch_sub(1, Relaxed);
    }

    pub fn outcomes(&self, outcome: Outcome) -> u64 {
        self.outcomes[outcome.index()].get()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sharded_counters_sum_across_threads() {
        let c = std::sync::Arc::new(Counter::default());
        let threads: Vec<_> = (0..16)
            .map(|_| {
                let c = c.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| c.add(1)))
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        assert_eq!(c.get(), 16_000);
    }
}
