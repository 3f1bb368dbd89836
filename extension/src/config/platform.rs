//! Where the sidecar runs: a Lambda platform, or standalone, and what each allows.
//!
//! Lambda tells every process of the environment in `AWS_LAMBDA_INITIALIZATION_TYPE`
//! (AWS's emulator leaves it unset for on-demand); without `AWS_LAMBDA_RUNTIME_API`
//! there is no Lambda at all (`host.rs` decides). The differences that matter here
//! (the events each registers for are `lifecycle::lambda`'s business):
//!
//! | platform | events | refresh-ahead driven by | values fetched during INIT |
//! | --- | --- | --- | --- |
//! | on-demand | INVOKE, SHUTDOWN | INVOKE (frozen between invokes) | yes |
//! | provisioned concurrency | INVOKE, SHUTDOWN | INVOKE; INIT may be hours before the first | yes |
//! | SnapStart | INVOKE, SHUTDOWN | INVOKE | **no**: memory and disk are snapshotted |
//! | Managed Instances | SHUTDOWN only (INVOKE is refused with 403) | a timer: never frozen, invokes overlap | yes |
//! | standalone | none (SIGTERM, SIGINT) | a timer | yes (there is no INIT, only start-up) |

use std::fmt;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Platform {
    OnDemand,
    Provisioned,
    SnapStart,
    ManagedInstances,
    /// Outside Lambda: ECS, Kubernetes, EC2, a laptop.
    Standalone,
}

/// What drives refresh-ahead.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefreshDriver {
    /// Each INVOKE, finished before the next `event/next` (timers do not run while
    /// the environment is frozen).
    Invoke,
    /// A timer: the environment is never frozen and gets no INVOKE events.
    Timer,
}

impl Platform {
    /// The Lambda platform `AWS_LAMBDA_INITIALIZATION_TYPE` names; unset or empty is
    /// on-demand. An unknown value is returned as `Err` (the caller logs it and
    /// runs as on-demand, the most common and most conservative mode).
    pub fn from_initialization_type(value: Option<&str>) -> Result<Platform, String> {
        match value.map(str::trim).unwrap_or("") {
            "" | "on-demand" => Ok(Platform::OnDemand),
            "provisioned-concurrency" => Ok(Platform::Provisioned),
            "snap-start" => Ok(Platform::SnapStart),
            "lambda-managed-instances" => Ok(Platform::ManagedInstances),
            other => Err(other.chars().take(64).collect()),
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            Platform::OnDemand => "on-demand",
            Platform::Provisioned => "provisioned-concurrency",
            Platform::SnapStart => "snap-start",
            Platform::ManagedInstances => "lambda-managed-instances",
            Platform::Standalone => "standalone",
        }
    }

    pub fn in_lambda(self) -> bool {
        self != Platform::Standalone
    }

    pub fn refresh_driver(self) -> RefreshDriver {
        match self {
            Platform::ManagedInstances | Platform::Standalone => RefreshDriver::Timer,
            Platform::OnDemand | Platform::Provisioned | Platform::SnapStart => RefreshDriver::Invoke,
        }
    }

    /// Whether values may be fetched during INIT. Under SnapStart whatever INIT
    /// leaves in memory or on disk is copied into every restored environment, for
    /// days: a wipe is not enough (freed pages, socket and SDK buffers keep copies).
    pub fn fetches_during_init(self) -> bool {
        self != Platform::SnapStart
    }
}

impl fmt::Display for Platform {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_documented_value_and_the_emulators_unset_one() {
        for (value, platform) in [
            (None, Platform::OnDemand),
            (Some(""), Platform::OnDemand),
            (Some("on-demand"), Platform::OnDemand),
            (Some("provisioned-concurrency"), Platform::Provisioned),
            (Some("snap-start"), Platform::SnapStart),
            (Some("lambda-managed-instances"), Platform::ManagedInstances),
        ] {
            assert_eq!(Platform::from_initialization_type(value), Ok(platform), "{value:?}");
            if let Some(v) = value.filter(|v| !v.is_empty()) {
                assert_eq!(platform.label(), v);
            }
        }
        assert_eq!(
            Platform::from_initialization_type(Some("Managed-Instances")),
            Err("Managed-Instances".into())
        );
    }

    #[test]
    fn managed_instances_and_standalone_refresh_on_a_timer() {
        for p in [Platform::ManagedInstances, Platform::Standalone] {
            assert_eq!(p.refresh_driver(), RefreshDriver::Timer);
            assert!(p.fetches_during_init());
        }
        for p in [Platform::OnDemand, Platform::Provisioned, Platform::SnapStart] {
            assert_eq!(p.refresh_driver(), RefreshDriver::Invoke);
            assert!(p.in_lambda());
        }
        assert!(!Platform::Standalone.in_lambda());
        assert!(!Platform::SnapStart.fetches_during_init());
    }
}
