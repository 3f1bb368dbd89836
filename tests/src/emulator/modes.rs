//! The platforms an execution environment can run on (`AWS_LAMBDA_INITIALIZATION_TYPE`),
//! and what each changes in Lambda's rules (`lambda-contract.md`, "Platforms beyond
//! on-demand"; the verified details come from AWS's docs and its Runtime Interface
//! Emulator):
//!
//! - [`Mode::OnDemand`]: the rules as in the rest of the emulator; init has 10 s.
//! - [`Mode::Provisioned`]: init runs ahead of traffic and may last 130 s (or the
//!   function timeout if higher); the environment then stays frozen for as long as
//!   the test says ([`super::Emulator::idle`]) before invokes come.
//! - [`Mode::SnapStart`]: init as provisioned, then a snapshot (every process stopped,
//!   memory and `/tmp` scanned for planted values) and a restore
//!   (`snapstart.rs`); credentials come from a container credentials endpoint, not
//!   from `AWS_SESSION_TOKEN` (`credentials.rs`).
//! - [`Mode::ManagedInstances`]: extensions may register for SHUTDOWN only, nothing is
//!   ever frozen, up to `max_concurrency` invokes run at once (`managed.rs`), the
//!   runtime is stopped before extensions get SHUTDOWN, and an extension that exits
//!   before SHUTDOWN crashes the environment.

use std::time::Duration;

use super::state::ShutdownReason;

/// Lambda's init limit on demand.
const ON_DEMAND_INIT_LIMIT: Duration = Duration::from_secs(10);
/// The init limit elsewhere, unless the function timeout is higher.
const LONG_INIT_LIMIT: Duration = Duration::from_secs(130);
/// The runtime's grace between SIGTERM and SIGKILL at shutdown, on demand (the
/// contract's 300 ms) and on Managed Instances (AWS's emulator: 600 ms).
const RUNTIME_GRACE: Duration = Duration::from_millis(300);
const MANAGED_RUNTIME_GRACE: Duration = Duration::from_millis(600);

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Mode {
    #[default]
    OnDemand,
    Provisioned,
    SnapStart,
    /// Lambda Managed Instances with `AWS_LAMBDA_MAX_CONCURRENCY` = `max_concurrency`.
    ManagedInstances {
        max_concurrency: usize,
    },
}

impl Mode {
    /// Managed Instances with `max_concurrency` invokes at once (at least one).
    pub fn managed_instances(max_concurrency: usize) -> Mode {
        Mode::ManagedInstances {
            max_concurrency: max_concurrency.max(1),
        }
    }

    /// From `on-demand`, `provisioned`, `snapstart`, `managed-instances` (what
    /// `DEMO_MODE` takes; Lambda's own spellings are accepted too). Managed Instances
    /// get `max_concurrency` invokes at once.
    pub fn parse(s: &str, max_concurrency: usize) -> Option<Mode> {
        match s.trim().to_ascii_lowercase().as_str() {
            "" | "on-demand" | "ondemand" => Some(Mode::OnDemand),
            "provisioned" | "provisioned-concurrency" => Some(Mode::Provisioned),
            "snapstart" | "snap-start" => Some(Mode::SnapStart),
            "managed-instances" | "lambda-managed-instances" => Some(Mode::managed_instances(max_concurrency)),
            _ => None,
        }
    }

    /// The value of `AWS_LAMBDA_INITIALIZATION_TYPE`.
    pub fn initialization_type(self) -> &'static str {
        match self {
            Mode::OnDemand => "on-demand",
            Mode::Provisioned => "provisioned-concurrency",
            Mode::SnapStart => "snap-start",
            Mode::ManagedInstances { .. } => "lambda-managed-instances",
        }
    }

    /// How long init may take: 10 s on demand; elsewhere 130 s or the function
    /// timeout, whichever is higher.
    pub fn init_limit(self, function_timeout: Duration) -> Duration {
        match self {
            Mode::OnDemand => ON_DEMAND_INIT_LIMIT,
            _ => LONG_INIT_LIMIT.max(function_timeout),
        }
    }

    pub fn is_managed(self) -> bool {
        matches!(self, Mode::ManagedInstances { .. })
    }

    /// Whether the environment is frozen between invokes (everywhere but Managed Instances).
    pub fn freezes(self) -> bool {
        !self.is_managed()
    }

    /// How many invokes may be in flight at once.
    pub fn max_concurrency(self) -> usize {
        match self {
            Mode::ManagedInstances { max_concurrency } => max_concurrency,
            _ => 1,
        }
    }

    pub fn runtime_grace(self) -> Duration {
        if self.is_managed() {
            MANAGED_RUNTIME_GRACE
        } else {
            RUNTIME_GRACE
        }
    }

    /// The reason extensions are told: Managed Instances know only `spindown` and
    /// `failure`, so a timeout is a failure there.
    pub fn shutdown_reason(self, reason: ShutdownReason) -> ShutdownReason {
        match (self, reason) {
            (Mode::ManagedInstances { .. }, ShutdownReason::Timeout) => ShutdownReason::Failure,
            (_, r) => r,
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.initialization_type())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_mode_has_its_rules() {
        let t = Duration::from_secs(3);
        assert_eq!(Mode::OnDemand.init_limit(t), Duration::from_secs(10));
        assert_eq!(Mode::SnapStart.init_limit(t), Duration::from_secs(130));
        assert_eq!(
            Mode::Provisioned.init_limit(Duration::from_secs(900)),
            Duration::from_secs(900)
        );
        assert_eq!(Mode::managed_instances(0).max_concurrency(), 1);
        assert!(!Mode::managed_instances(4).freezes() && Mode::SnapStart.freezes());
        assert_eq!(
            Mode::managed_instances(2).shutdown_reason(ShutdownReason::Timeout),
            ShutdownReason::Failure
        );
        assert_eq!(
            Mode::OnDemand.shutdown_reason(ShutdownReason::Timeout),
            ShutdownReason::Timeout
        );
        for (s, ty) in [
            ("on-demand", "on-demand"),
            ("provisioned", "provisioned-concurrency"),
            ("snapstart", "snap-start"),
            ("managed-instances", "lambda-managed-instances"),
        ] {
            assert_eq!(Mode::parse(s, 4).map(Mode::initialization_type), Some(ty));
        }
        assert_eq!(Mode::parse("nonsense", 4), None);
    }
}
